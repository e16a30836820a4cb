//! A small blocking HTTP/1.1 client over `std::net::TcpStream`, enough to POST JSON to apf's
//! simulator and read the answer.
//!
//! One connection per request with `Connection: close`, so a response ends at its
//! `Content-Length`, at the last chunk of a chunked body, or at end of stream. Every read and
//! write has a timeout and every size is capped, so a misbehaving server cannot hang the agent or
//! exhaust its memory. Name resolution happens here too: the image is `FROM scratch`, so a
//! statically linked libc has no NSS modules to read `/etc/hosts` with, and the agent reads it
//! itself before asking the system resolver.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::url::{BaseUrl, Host};

const MAX_LINE: usize = 16 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request got no response: the two cases are retried differently in spirit (nothing was
/// sent versus an answer was lost), though both are transient to the caller.
#[derive(Debug)]
pub enum HttpError {
    Connect(io::Error),
    Exchange(io::Error),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "could not connect: {e}"),
            HttpError::Exchange(e) => write!(f, "request failed: {e}"),
        }
    }
}

pub struct Client {
    url: BaseUrl,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl Client {
    pub fn new(url: BaseUrl, io_timeout: Duration) -> Client {
        Client { url, connect_timeout: Duration::from_secs(10), io_timeout }
    }

    /// POST a JSON body to `endpoint` under the base URL with a bearer token.
    pub fn post_json(
        &self,
        endpoint: &str,
        bearer: &str,
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let mut stream = self.connect().map_err(HttpError::Connect)?;
        let exchange = |stream: &mut TcpStream| -> io::Result<Response> {
            stream.set_read_timeout(Some(self.io_timeout))?;
            stream.set_write_timeout(Some(self.io_timeout))?;
            let head = request_head(&self.url, endpoint, bearer, body.len());
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)?;
            stream.flush()?;
            read_response(&mut BufReader::new(stream))
        };
        exchange(&mut stream).map_err(HttpError::Exchange)
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let addrs = resolve(&self.url.host, self.url.port, Path::new("/etc/hosts"))?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolved to nothing");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn request_head(url: &BaseUrl, endpoint: &str, bearer: &str, len: usize) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         User-Agent: apf-demo-agent/{version}\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n",
        target = url.target(endpoint),
        host = url.host_header(),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// The addresses for a host: literals as they are, `localhost` as loopback, then `hosts_file`,
/// then the system resolver.
pub fn resolve(host: &Host, port: u16, hosts_file: &Path) -> io::Result<Vec<SocketAddr>> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => name,
    };
    if name == "localhost" {
        let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
        return Ok(loopback.into_iter().map(|ip| SocketAddr::new(ip, port)).collect());
    }

    if let Ok(text) = std::fs::read_to_string(hosts_file) {
        let found = hosts_lookup(&text, name);
        if !found.is_empty() {
            return Ok(found.into_iter().map(|ip| SocketAddr::new(ip, port)).collect());
        }
    }
    Ok((name.as_str(), port).to_socket_addrs()?.collect())
}

/// Every address `/etc/hosts`-format text gives for `name`, in file order.
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok()) else { continue };
        if fields.any(|alias| alias.eq_ignore_ascii_case(name)) && !found.contains(&ip) {
            found.push(ip);
        }
    }
    found
}

fn bad_data(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Read one response: status line, headers, body. Interim `1xx` responses are skipped.
pub fn read_response<R: BufRead>(reader: &mut R) -> io::Result<Response> {
    loop {
        let (status, headers) = read_head(reader)?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = read_body(reader, status, &headers)?;
        return Ok(Response { status, headers, body });
    }
}

fn read_head<R: BufRead>(reader: &mut R) -> io::Result<(u16, Vec<(String, String)>)> {
    let line = read_line(reader)?.ok_or_else(|| bad_data("connection closed before a response"))?;
    let status = parse_status_line(&line)?;

    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad_data("connection closed in headers"))?;
        if line.is_empty() {
            return Ok((status, headers));
        }
        total += line.len();
        if total > MAX_HEADER_BYTES {
            return Err(bad_data("response headers are too large"));
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| bad_data("a header line has no colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad_data("not an HTTP/1.x response"));
    }
    let code = parts.next().unwrap_or("");
    match code.parse::<u16>() {
        Ok(status) if code.len() == 3 && (100..600).contains(&status) => Ok(status),
        _ => Err(bad_data("bad status code in the response")),
    }
}

fn read_body<R: BufRead>(
    reader: &mut R,
    status: u16,
    headers: &[(String, String)],
) -> io::Result<Vec<u8>> {
    if status == 204 || status == 304 {
        return Ok(Vec::new());
    }

    let chunked = values(headers, "transfer-encoding")
        .flat_map(|v| v.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(reader);
    }

    let mut lengths = values(headers, "content-length");
    if let Some(first) = lengths.next() {
        if lengths.any(|other| other != first) {
            return Err(bad_data("conflicting Content-Length headers"));
        }
        let len: usize = first.parse().map_err(|_| bad_data("bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(bad_data("response body is too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }

    let mut body = Vec::new();
    reader.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
    if body.len() > MAX_BODY {
        return Err(bad_data("response body is too large"));
    }
    Ok(body)
}

fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn read_chunked<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad_data("connection closed in a chunk"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad_data(format!("bad chunk size `{size_text}`")))?;
        if size == 0 {
            // Trailers, if any, end with an empty line; a server that closes instead is tolerated.
            while let Some(trailer) = read_line(reader)? {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(bad_data("response body is too large"));
        }

        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        match read_line(reader)? {
            Some(end) if end.is_empty() => {}
            _ => return Err(bad_data("a chunk does not end with CRLF")),
        }
    }
}

/// One line without its `\r\n` (or bare `\n`), or `None` at end of stream before any byte.
fn read_line<R: BufRead>(reader: &mut R) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            bad_data("a line in the response is too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| bad_data("a header line is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> io::Result<Response> {
        read_response(&mut raw.as_bytes())
    }

    #[test]
    fn content_length_body() {
        let resp = parse(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n\
             {\"a\":1}trailing junk is not read",
        )
        .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(resp.body, b"{\"a\":1}");
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let resp = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4;name=x\r\n{\"a\"\r\nA\r\n:1234567}\n\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
        .unwrap();
        assert_eq!(resp.body, b"{\"a\":1234567}\n");
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let resp = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             2\r\nok\r\n0\r\n",
        )
        .unwrap();
        assert_eq!(resp.body, b"ok");
    }

    #[test]
    fn body_to_end_of_stream_without_length() {
        let resp = parse("HTTP/1.0 503 Service Unavailable\nRetry-After: 2\n\nbusy").unwrap();
        assert_eq!(resp.status, 503);
        assert_eq!(resp.header("retry-after"), Some("2"));
        assert_eq!(resp.body, b"busy");
    }

    #[test]
    fn interim_continue_is_skipped() {
        let resp =
            parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 402 Payment Required\r\nContent-Length: 2\r\n\r\nno")
                .unwrap();
        assert_eq!(resp.status, 402);
        assert_eq!(resp.body, b"no");
    }

    #[test]
    fn malformed_responses_are_errors() {
        for raw in [
            "",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "HTTP/1.1 200 OK\r\nContent-Le",
        ] {
            assert!(parse(raw).is_err(), "accepted {raw:?}");
        }
    }

    #[test]
    fn oversized_values_are_refused() {
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(parse(&huge).is_err());
        let long_line = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_LINE + 10));
        assert!(parse(&long_line).is_err());
        let chunk =
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", MAX_BODY + 1);
        assert!(parse(&chunk).is_err());
    }

    #[test]
    fn request_head_is_well_formed() {
        let url = BaseUrl::parse("http://127.0.0.1:4000/api/v1").unwrap();
        let head = request_head(&url, "chat/completions", "sk-test", 12);
        assert!(
            head.starts_with("POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n")
        );
        assert!(head.contains("\r\nAuthorization: Bearer sk-test\r\n"));
        assert!(head.contains("\r\nContent-Length: 12\r\n"));
        assert!(head.ends_with("\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn hosts_file_lookup() {
        let text = "127.0.0.1\tlocalhost\n# 10.0.0.1 sim\n::1 localhost ip6-localhost\n\
                    172.17.0.1   host.docker.internal  # gateway\nnot-an-ip sim\n\
                    127.0.0.2 SIM other\n127.0.0.2 sim\n";
        assert_eq!(hosts_lookup(text, "sim"), vec!["127.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            hosts_lookup(text, "host.docker.internal"),
            vec!["172.17.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(hosts_lookup(text, "absent").is_empty());
    }

    #[test]
    fn resolve_prefers_literals_localhost_and_the_hosts_file() {
        let none = Path::new("/nonexistent/hosts");
        let ip = Host::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
        assert_eq!(resolve(&ip, 81, none).unwrap(), vec!["127.0.0.9:81".parse().unwrap()]);

        let local = resolve(&Host::Name("localhost".into()), 82, none).unwrap();
        assert_eq!(local, vec!["127.0.0.1:82".parse().unwrap(), "[::1]:82".parse().unwrap()]);

        let dir = std::env::temp_dir().join(format!("apf-demo-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, "127.0.0.3 apf-sim\n").unwrap();
        let found = resolve(&Host::Name("apf-sim".into()), 83, &file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, vec!["127.0.0.3:83".parse().unwrap()]);
    }

    #[test]
    fn round_trip_over_a_loopback_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = [0u8; 11];
            reader.read_exact(&mut body).unwrap();
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nyes\r\n0\r\n\r\n",
            )
            .unwrap();
            (head, body)
        });

        let url = BaseUrl::parse(&format!("http://127.0.0.1:{port}/api/v1")).unwrap();
        let client = Client::new(url, Duration::from_secs(5));
        let resp = client.post_json("chat/completions", "sk-x", b"{\"m\":\"hi\"}\n").unwrap();
        let (head, body) = server.join().unwrap();

        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"yes");
        assert!(head.starts_with("POST /api/v1/chat/completions HTTP/1.1\r\n"));
        assert_eq!(&body, b"{\"m\":\"hi\"}\n");
    }

    #[test]
    fn refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = Client::new(url, Duration::from_secs(1));
        assert!(matches!(client.post_json("x", "k", b""), Err(HttpError::Connect(_))));
    }
}
