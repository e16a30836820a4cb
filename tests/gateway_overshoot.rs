//! H3 closed: the same concurrent load against the same cap, once straight at the simulator with
//! a capped key (which overshoots, because OpenRouter admits against recorded spend) and once
//! through the gateway (which reserves each worst case first, and so never passes the cap).

#[path = "gateway_common/mod.rs"]
mod common;

use apf::gateway::{CostSource, Endpoint};
use apf::money::Usd;
use apf::sim::Faults;
use common::{SONNET, Setup, ask, drain, mint_key, usd};
use futures_util::future::join_all;

const BUDGET: &str = "0.02";
const PARALLEL: usize = 16;
const ROUNDS: usize = 6;
const MAX_TOKENS: u64 = 300;

fn faults() -> Faults {
    // Every completion takes 300 ms between admission and settlement, so a round's requests
    // are all in flight together.
    Faults { latency_ms: 300, ..Faults::default() }
}

/// `ROUNDS` rounds of `PARALLEL` concurrent requests; the statuses seen, in order.
async fn load(http: &reqwest::Client, url: &str, bearer: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for round in 0..ROUNDS {
        let calls = (0..PARALLEL).map(|n| {
            let body =
                ask(SONNET, &format!("Round {round}, task {n}: summarise."), Some(MAX_TOKENS));
            async move {
                let r = http.post(url).bearer_auth(bearer).json(&body).send().await;
                r.expect("answered").status().as_u16()
            }
        });
        statuses.extend(join_all(calls).await);
    }
    statuses
}

fn tally(statuses: &[u16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0) += 1;
    }
    counts.iter().map(|(s, n)| format!("{n}×{s}")).collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_spend_stays_under_the_cap_while_the_key_alone_overshoots() {
    let setup = Setup::new(faults(), BUDGET, SONNET).await;
    let cap = usd(BUDGET);
    let mut events = setup.gateway.subscribe();

    // Key only: a second key with the same cap, called directly.
    let (direct_key, _) = mint_key(&setup.client, &setup.sim, "direct", cap).await;
    let direct_url = format!("{}/chat/completions", setup.sim.base_url);
    let direct = load(&setup.http, &direct_url, direct_key.expose()).await;
    let direct_spend = setup.client.key_info(&direct_key).await.expect("/key").usage;
    common::settle_sim(&setup.sim).await;
    let direct_spend =
        direct_spend.max(setup.client.key_info(&direct_key).await.expect("/key").usage);

    // Gateway: the same load through the gateway with its token.
    let gateway_url = format!("{}/chat/completions", setup.gateway.base_url());
    let gated = load(&setup.http, &gateway_url, setup.token.expose()).await;
    setup.idle().await;
    let gateway_spend = setup.upstream_usage().await;
    let ledger = setup.gateway.account("m").expect("account");

    // The figures are what this test exists to report.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "cap {cap}; {ROUNDS} rounds of {PARALLEL} concurrent requests, max_tokens {MAX_TOKENS}"
        );
        eprintln!(
            "key only: spent ${} (over by ${}); {}",
            direct_spend.0.normalize(),
            (direct_spend - cap).0.normalize(),
            tally(&direct)
        );
        eprintln!(
            "gateway:  spent ${} (${} under the cap); {}; {} refused by the gateway",
            gateway_spend.0.normalize(),
            (cap - gateway_spend).0.normalize(),
            tally(&gated),
            ledger.refused
        );
    }

    assert!(direct_spend > cap, "the key alone overshoots: {direct_spend} against {cap}");
    assert!(gateway_spend <= cap, "the gateway holds the cap: {gateway_spend} against {cap}");
    assert_eq!(ledger.spent, gateway_spend, "the gateway's books match what upstream charged");
    assert_eq!((ledger.reserved, ledger.in_flight), (Usd::ZERO, 0));
    assert!(gated.contains(&200) && gated.contains(&402), "some admitted, some refused: {gated:?}");
    let upstream_refusals = setup
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.key_hash.as_deref() == Some(setup.real_hash.as_str()) && r.status != 200)
        .count();
    assert_eq!(upstream_refusals, 0, "upstream never had to refuse a request the gateway sent");
    // Most of the budget is used: the gateway refuses only what could not fit.
    assert!(gateway_spend > cap * rust_decimal::Decimal::new(5, 1), "{gateway_spend} is used");

    let chat: Vec<_> = drain(&mut events)
        .into_iter()
        .filter(|e| e.endpoint == Endpoint::ChatCompletions)
        .collect();
    assert_eq!(chat.len(), ROUNDS * PARALLEL, "one event per request");
    let booked: Usd = chat.iter().map(|e| e.cost).sum();
    assert_eq!(booked, gateway_spend, "the events add up to the spend");
    assert!(
        chat.iter().filter(|e| e.forwarded).all(|e| e.cost_source == CostSource::Usage),
        "every forwarded request settled from its usage.cost"
    );
    setup.gateway.shutdown().await;
}
