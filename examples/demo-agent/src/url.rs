//! The base URL the agent talks to, parsed by hand: `http://HOST[:PORT][/PATH]`.
//!
//! The agent speaks plain HTTP to apf's simulator, so `https://` is recognised only to be refused
//! with its own error. Credentials, queries and fragments in a base URL are refused rather than
//! guessed at, so the agent can only ever reach the one host the URL names.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Where requests go: a host, a port and a path prefix such as `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub host: Host,
    pub port: u16,
    /// Empty, or starting with `/` and without a trailing `/`.
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// `https://`: the demo agent has no TLS.
    Https,
    Invalid(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Https => f.write_str(
                "the demo agent speaks plain HTTP only (for apf's simulator); \
                 OPENROUTER_BASE_URL is an https:// URL",
            ),
            UrlError::Invalid(why) => write!(f, "OPENROUTER_BASE_URL is not usable: {why}"),
        }
    }
}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, UrlError> {
        let text = text.trim();
        let rest = match split_scheme(text) {
            Some(("http", rest)) => rest,
            Some(("https", _)) => return Err(UrlError::Https),
            Some((other, _)) => return Err(invalid(format!("unsupported scheme `{other}`"))),
            None => return Err(invalid("expected a URL starting with http://")),
        };

        if rest.contains(['?', '#']) {
            return Err(invalid("a base URL takes no query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not accepted"));
        }

        let (host, port) = parse_authority(authority)?;
        Ok(BaseUrl { host, port, prefix: path.trim_end_matches('/').to_string() })
    }

    /// The request target for an endpoint below the prefix, e.g. `/api/v1/chat/completions`.
    pub fn target(&self, endpoint: &str) -> String {
        format!("{}/{}", self.prefix, endpoint.trim_start_matches('/'))
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => format!("{ip}:{}", self.port),
            Host::Name(name) => format!("{name}:{}", self.port),
        }
    }
}

fn invalid(why: impl Into<String>) -> UrlError {
    UrlError::Invalid(why.into())
}

fn split_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let lower = scheme.to_ascii_lowercase();
    let known = ["http", "https"].into_iter().find(|k| *k == lower);
    Some((known.unwrap_or(scheme), rest))
}

fn parse_authority(authority: &str) -> Result<(Host, u16), UrlError> {
    if authority.is_empty() {
        return Err(invalid("the URL names no host"));
    }

    if let Some(bracketed) = authority.strip_prefix('[') {
        let (inner, after) =
            bracketed.split_once(']').ok_or_else(|| invalid("unclosed `[` in the host"))?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| invalid("bad IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| invalid("junk after `]`"))?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), parse_port(port)?));
    }

    let (host_text, port_text) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port = parse_port(port_text)?;
    if let Ok(ip) = host_text.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), port));
    }
    let valid_name = !host_text.is_empty()
        && host_text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid_name {
        return Err(invalid("the host is neither an IP address nor a host name"));
    }
    Ok((Host::Name(host_text.to_ascii_lowercase()), port))
}

fn parse_port(text: Option<&str>) -> Result<u16, UrlError> {
    let Some(text) = text else { return Ok(80) };
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(format!("bad port `{text}`"))),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ok(text: &str) -> BaseUrl {
        match BaseUrl::parse(text) {
            Ok(url) => url,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn loopback_with_port_and_prefix() {
        let url = ok("http://127.0.0.1:8765/api/v1/");
        assert_eq!(url.host, Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(url.port, 8765);
        assert_eq!(url.prefix, "/api/v1");
        assert_eq!(url.target("chat/completions"), "/api/v1/chat/completions");
        assert_eq!(url.host_header(), "127.0.0.1:8765");
    }

    #[test]
    fn default_port_and_empty_prefix() {
        let url = ok("HTTP://LocalHost");
        assert_eq!(url.host, Host::Name("localhost".into()));
        assert_eq!(url.port, 80);
        assert_eq!(url.target("/chat/completions"), "/chat/completions");
    }

    #[test]
    fn ipv6_literal() {
        let url = ok("http://[::1]:9000/api/v1");
        assert_eq!(url.host, Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(url.port, 9000);
        assert_eq!(url.host_header(), "[::1]:9000");
        assert_eq!(ok("http://[::1]/x").port, 80);
    }

    #[test]
    fn https_is_its_own_error() {
        assert_eq!(BaseUrl::parse("https://127.0.0.1/api/v1"), Err(UrlError::Https));
        assert_eq!(BaseUrl::parse("HTTPS://x"), Err(UrlError::Https));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            "127.0.0.1:80",
            "ftp://127.0.0.1/",
            "http://",
            "http:///api",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:abc/",
            "http://user:pw@127.0.0.1/",
            "http://127.0.0.1/api?x=1",
            "http://127.0.0.1/api#frag",
            "http://[::1/api",
            "http://[::1]x/api",
            "http://bad host/",
        ] {
            assert!(
                matches!(BaseUrl::parse(bad), Err(UrlError::Invalid(_))),
                "{bad} should be invalid"
            );
        }
    }
}
