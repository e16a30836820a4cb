//! The latency the metering gateway adds per request, measured side by side in one run: the
//! same requests sent straight to an upstream and through a gateway in front of it, interleaved
//! (the order flipping every pair) so both paths meet the same machine load.
//!
//! Two upstreams are measured. The in-process simulator is the reference; but its sockets do not
//! set TCP_NODELAY, so a streamed answer whose response head goes out alone waits for the
//! reader's delayed ACK (about 40 ms on Linux) before its first chunk, on either path and
//! whenever the race goes that way. A small stub upstream that sets TCP_NODELAY and streams
//! the same shape of answer shows what the gateway itself adds.
//!
//! `cargo bench --bench gateway` (add `-- N` for N requests each way per case; 500 by default).

use std::time::{Duration, Instant};

use apf::gateway::{GatewayConfig, GatewayHandle, ModelPrice, ModelPrices};
use apf::money::Usd;
use apf::openrouter::{Client, wire};
use apf::secret::Secret;
use apf::sim::SimConfig;
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use serde_json::{Value, json};

const MODEL: &str = "openai/gpt-4o-mini";

fn body(n: usize, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": 40,
        "stream": stream,
        "messages": [{"role": "user", "content": format!("Benchmark question number {n}.")}],
    })
}

/// One request; returns (time to response headers, time to the end of the body).
async fn once(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let response = http.post(url).bearer_auth(key).json(body).send().await?;
    anyhow::ensure!(response.status().is_success(), "{url} answered {}", response.status());
    let head = started.elapsed();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        chunk?;
    }
    Ok((head, started.elapsed()))
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let n = samples.len().max(1);
    let at = |q: f64| {
        let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        samples.get(i).copied().unwrap_or_default()
    };
    let total: Duration = samples.iter().sum();
    Stats { p50: at(0.50), p99: at(0.99), mean: total / n as u32 }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Printing the figures is the point of a benchmark.
#[allow(clippy::print_stdout)]
fn report(what: &str, direct: Vec<Duration>, gateway: Vec<Duration>) {
    let (d, g) = (stats(direct), stats(gateway));
    println!("{what}");
    println!(
        "    direct   p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs",
        us(d.p50),
        us(d.p99),
        us(d.mean)
    );
    println!(
        "    gateway  p50 {:>8.1} µs   p99 {:>8.1} µs   mean {:>8.1} µs",
        us(g.p50),
        us(g.p99),
        us(g.mean)
    );
    println!(
        "    added    p50 {:>8.1} µs   p99 {:>8.1} µs   ratio p50 {:.2}x  p99 {:.2}x",
        us(g.p50) - us(d.p50),
        us(g.p99) - us(d.p99),
        us(g.p50) / us(d.p50),
        us(g.p99) / us(d.p99)
    );
}

/// Measure `n` interleaved pairs of plain and of streamed requests against one upstream.
async fn measure(
    name: &str,
    http: &reqwest::Client,
    direct: (&str, &str),
    gateway: (&str, &str),
    n: usize,
) -> anyhow::Result<()> {
    let direct_url = format!("{}/chat/completions", direct.0);
    let gateway_url = format!("{}/chat/completions", gateway.0);
    let paths = [(direct_url.as_str(), direct.1), (gateway_url.as_str(), gateway.1)];
    for stream in [false, true] {
        for w in 0..50 {
            for (url, bearer) in paths {
                once(http, url, bearer, &body(w, stream)).await?;
            }
        }
        let mut heads = [Vec::with_capacity(n), Vec::with_capacity(n)];
        let mut totals = [Vec::with_capacity(n), Vec::with_capacity(n)];
        for i in 0..n {
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            for which in order {
                let (url, bearer) = paths[which];
                let (head, total) = once(http, url, bearer, &body(1000 + i, stream)).await?;
                heads[which].push(head);
                totals[which].push(total);
            }
        }
        let [direct_total, gateway_total] = totals;
        let kind = if stream { "streamed" } else { "plain" };
        report(&format!("{name}, {kind}, whole response"), direct_total, gateway_total);
        if stream {
            let [direct_head, gateway_head] = heads;
            report(&format!("{name}, streamed, to response headers"), direct_head, gateway_head);
        }
    }
    Ok(())
}

/// A stub upstream with TCP_NODELAY: a fixed answer, plain or streamed in 14 frames like the
/// simulator's, each frame handed over by a task of its own as a real stream's would be.
async fn stub_upstream() -> anyhow::Result<String> {
    async fn completions(body: Bytes) -> Response {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let usage = json!({"prompt_tokens": 8, "completion_tokens": 40, "total_tokens": 48,
                           "cost": 0.0000252});
        if request["stream"] != json!(true) {
            return axum::Json(json!({
                "id": "gen-stub", "object": "chat.completion", "created": 1, "model": MODEL,
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "word ".repeat(40)}}],
                "usage": usage,
            }))
            .into_response();
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        tokio::spawn(async move {
            let mut frames = vec![": OPENROUTER PROCESSING\n\n".to_string()];
            for n in 0..12 {
                let chunk = json!({"id": "gen-stub", "object": "chat.completion.chunk",
                                   "model": MODEL, "choices": [{"index": 0,
                                   "delta": {"content": format!("word{n} ")}}]});
                frames.push(format!("data: {chunk}\n\n"));
            }
            let last = json!({"id": "gen-stub", "choices": [], "usage": usage});
            frames.push(format!("data: {last}\n\n"));
            frames.push("data: [DONE]\n\n".to_string());
            for frame in frames {
                if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        }));
        ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], body).into_response()
    }
    let app =
        axum::Router::new().route("/api/v1/chat/completions", axum::routing::post(completions));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/api/v1"))
}

async fn gateway_for(
    upstream: &str,
    key: Secret,
    price: ModelPrice,
) -> anyhow::Result<(GatewayHandle, Secret)> {
    let gateway = apf::gateway::start(GatewayConfig::new("127.0.0.1:0".parse()?, upstream)).await?;
    let budget = Usd::new(50.into());
    let token = gateway.register("bench", key, budget, ModelPrices::new().with(MODEL, price))?;
    Ok((gateway, token))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(500).max(1);
    let sim = apf::sim::start(SimConfig::default()).await?;
    let client = Client::new(&sim.base_url);
    let create = wire::CreateKey {
        name: "bench".into(),
        limit: Some(Usd::new(50.into())),
        limit_reset: None,
        include_byok_in_limit: None,
        expires_at: None,
    };
    let (_, key) = client.create_key(&sim.management_key, &create).await?;
    let model = client.models(None).await?.into_iter().find(|m| m.id == MODEL);
    let price = ModelPrice::from_wire(&model.ok_or_else(|| anyhow::anyhow!("{MODEL} listed"))?)?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;

    let (gateway, token) = gateway_for(&sim.base_url, key.clone(), price.clone()).await?;
    let base = gateway.base_url();
    measure("simulator", &http, (&sim.base_url, key.expose()), (&base, token.expose()), n).await?;

    let stub = stub_upstream().await?;
    let stub_key = Secret::new("stub-key");
    let (stub_gateway, stub_token) = gateway_for(&stub, stub_key.clone(), price).await?;
    let stub_base = stub_gateway.base_url();
    measure(
        "nodelay stub",
        &http,
        (&stub, stub_key.expose()),
        (&stub_base, stub_token.expose()),
        n,
    )
    .await?;

    let ledger = gateway.account("bench").ok_or_else(|| anyhow::anyhow!("account"))?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{n} requests each way per case; the simulator's gateway booked {} over {} requests",
            ledger.spent, ledger.requests
        );
    }
    gateway.shutdown().await;
    stub_gateway.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
