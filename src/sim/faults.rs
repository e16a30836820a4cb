//! Fault injection: added latency, 429s with `Retry-After`, 5xx errors, dropped connections, and
//! spend that shows late. Random faults are drawn from a generator seeded with the simulator's
//! seed, one draw per request in arrival order, so a sequential test sees the same faults on
//! every run; scripted faults hit the next matching requests exactly.
//!
//! The same shape is read from a TOML fault file (`--faults`), from `POST /_sim/faults` as JSON,
//! and from [`super::SimHandle::set_faults`]:
//!
//! ```toml
//! latency_ms = 200          # added to every request; for chat, between admission and settling
//! latency_jitter_ms = 50    # plus up to this much more, seeded
//! rate_429 = 0.1            # share of requests answered 429 with Retry-After
//! retry_after_secs = 1
//! rate_5xx = 0.05           # share answered with status_5xx
//! status_5xx = 502
//! drop_rate = 0.02          # share whose connection is dropped mid-response
//! spend_delay_ms = 1500     # spend shows on /key, /keys, /credits and /generation this late
//! paths = ["/chat/completions"]  # random faults only on these routes; empty: every route
//!
//! [[script]]                # the next matching requests fail, in order, whatever the rates
//! path = "/keys"            # a route as in the request log, e.g. "/keys/{hash}"
//! status = 500              # answer this status (a 429 carries Retry-After) ...
//! times = 2
//! [[script]]
//! path = "/chat/completions"
//! drop = true               # ... or drop the connection
//! ```
//!
//! A dropped chat completion is generated and billed before its connection breaks, as an
//! interrupted stream is on providers that cannot cancel.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The longest latency or spend delay accepted, in milliseconds.
const MAX_MS: u64 = 600_000;

/// The faults in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
    pub rate_429: f64,
    pub retry_after_secs: u64,
    pub rate_5xx: f64,
    pub status_5xx: u16,
    pub drop_rate: f64,
    pub spend_delay_ms: u64,
    pub paths: Vec<String>,
    pub script: Vec<ScriptedFault>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            latency_jitter_ms: 0,
            rate_429: 0.0,
            retry_after_secs: 1,
            rate_5xx: 0.0,
            status_5xx: 502,
            drop_rate: 0.0,
            spend_delay_ms: 0,
            paths: Vec::new(),
            script: Vec::new(),
        }
    }
}

/// A fault for the next `times` requests to `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default)]
    pub drop: bool,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Faults {
    /// Read a TOML fault file.
    pub fn load(path: &Path) -> anyhow::Result<Faults> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading fault file {}", path.display()))?;
        let faults: Faults = toml::from_str(&text)
            .with_context(|| format!("parsing fault file {}", path.display()))?;
        faults.validate().with_context(|| format!("in fault file {}", path.display()))?;
        Ok(faults)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, rate) in [
            ("rate_429", self.rate_429),
            ("rate_5xx", self.rate_5xx),
            ("drop_rate", self.drop_rate),
        ] {
            anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} = {rate} is not between 0 and 1");
        }
        // Bounded so that no sum of durations or instants can overflow.
        anyhow::ensure!(
            self.latency_ms + self.latency_jitter_ms.min(MAX_MS) <= MAX_MS,
            "latency_ms + latency_jitter_ms is over {MAX_MS} (ten minutes)"
        );
        anyhow::ensure!(
            self.spend_delay_ms <= MAX_MS,
            "spend_delay_ms is over {MAX_MS} (ten minutes)"
        );
        anyhow::ensure!(self.retry_after_secs <= 86_400, "retry_after_secs is over a day");
        let total = self.rate_429 + self.rate_5xx + self.drop_rate;
        anyhow::ensure!(total <= 1.0, "rate_429 + rate_5xx + drop_rate = {total} is over 1");
        anyhow::ensure!(
            (500..=599).contains(&self.status_5xx),
            "status_5xx = {} is not a 5xx status",
            self.status_5xx
        );
        for s in &self.script {
            match (s.status, s.drop) {
                (Some(status), false) => anyhow::ensure!(
                    (400..=599).contains(&status),
                    "script for {}: status {status} is not an error status",
                    s.path
                ),
                (None, true) => {}
                _ => anyhow::bail!("script for {}: give either status or drop = true", s.path),
            }
        }
        Ok(())
    }

    pub fn spend_delay(&self) -> Duration {
        Duration::from_millis(self.spend_delay_ms)
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pass,
    Reject { status: u16, retry_after_secs: Option<u64> },
    Drop,
}

/// The decision for one request: its fate and its added latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub action: Action,
    pub latency: Duration,
}

/// The faults in force and the generator their draws come from.
#[derive(Debug)]
pub(crate) struct FaultState {
    pub faults: Faults,
    rng: StdRng,
}

impl FaultState {
    pub fn new(faults: Faults, seed: u64) -> FaultState {
        FaultState { faults, rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17) }
    }

    /// Decide the fate of a request to `route` (or its literal `path`).
    pub fn decide(&mut self, route: &str, path: &str) -> Decision {
        let latency = self.latency();
        let action = self.scripted(route, path).unwrap_or_else(|| self.random(route, path));
        Decision { action, latency }
    }

    fn latency(&mut self) -> Duration {
        let jitter = match self.faults.latency_jitter_ms {
            0 => 0,
            j => self.rng.random_range(0..=j),
        };
        Duration::from_millis(self.faults.latency_ms + jitter)
    }

    fn scripted(&mut self, route: &str, path: &str) -> Option<Action> {
        let retry = self.faults.retry_after_secs;
        let index = self.faults.script.iter().position(|s| s.path == route || s.path == path)?;
        let entry = &mut self.faults.script[index];
        let action = match entry.status {
            Some(status) if !entry.drop => {
                Action::Reject { status, retry_after_secs: (status == 429).then_some(retry) }
            }
            _ => Action::Drop,
        };
        entry.times = entry.times.saturating_sub(1);
        if entry.times == 0 {
            self.faults.script.remove(index);
        }
        Some(action)
    }

    fn random(&mut self, route: &str, path: &str) -> Action {
        let f = &self.faults;
        let applies = f.paths.is_empty() || f.paths.iter().any(|p| p == route || p == path);
        if !applies || f.rate_429 + f.rate_5xx + f.drop_rate <= 0.0 {
            return Action::Pass;
        }
        let (r429, r5xx, drop, status, retry) =
            (f.rate_429, f.rate_5xx, f.drop_rate, f.status_5xx, f.retry_after_secs);
        let u: f64 = self.rng.random();
        if u < r429 {
            Action::Reject { status: 429, retry_after_secs: Some(retry) }
        } else if u < r429 + r5xx {
            Action::Reject { status, retry_after_secs: None }
        } else if u < r429 + r5xx + drop {
            Action::Drop
        } else {
            Action::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let faults = Faults { rate_429: 0.3, rate_5xx: 0.2, drop_rate: 0.1, ..Faults::default() };
        let draws = |seed| {
            let mut state = FaultState::new(faults.clone(), seed);
            (0..200).map(|_| state.decide("/key", "/key").action).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        let all = draws(3);
        let count = |pred: fn(&Action) -> bool| all.iter().filter(|a| pred(a)).count();
        assert!((30..90).contains(&count(|a| matches!(a, Action::Reject { status: 429, .. }))));
        assert!((15..70).contains(&count(|a| matches!(a, Action::Reject { status: 502, .. }))));
        assert!((5..45).contains(&count(|a| matches!(a, Action::Drop))));
    }

    #[test]
    fn scripted_faults_hit_the_next_requests_then_stop() {
        let script =
            vec![ScriptedFault { path: "/keys".into(), status: Some(429), drop: false, times: 2 }];
        let mut state = FaultState::new(Faults { script, ..Faults::default() }, 0);
        assert_eq!(state.decide("/key", "/key").action, Action::Pass);
        let rejected = Action::Reject { status: 429, retry_after_secs: Some(1) };
        assert_eq!(state.decide("/keys", "/keys").action, rejected);
        assert_eq!(state.decide("/keys", "/keys").action, rejected);
        assert_eq!(state.decide("/keys", "/keys").action, Action::Pass);
        assert!(state.faults.script.is_empty());
    }

    #[test]
    fn the_sample_fault_file_is_valid() {
        let faults: Faults =
            toml::from_str(include_str!("../../examples/sim/faults.toml")).expect("parses");
        faults.validate().expect("valid");
        assert_eq!((faults.spend_delay_ms, faults.script.len()), (2000, 2));
    }

    #[test]
    fn fault_files_are_validated() {
        let bad: Faults = toml::from_str("rate_429 = 1.5").expect("parses");
        assert!(bad.validate().is_err());
        let endless: Faults =
            toml::from_str("spend_delay_ms = 18446744073709551615").expect("parses");
        assert!(endless.validate().is_err(), "durations are bounded");
        let neither: Faults = toml::from_str("[[script]]\npath = \"/keys\"").expect("parses");
        assert!(neither.validate().is_err());
        let ok: Faults =
            toml::from_str("latency_ms = 5\n[[script]]\npath = \"/keys\"\ndrop = true")
                .expect("ok");
        ok.validate().expect("valid");
        assert_eq!(ok.script[0].times, 1);
    }
}
