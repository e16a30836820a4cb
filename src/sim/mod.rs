//! `apf sim`: a local OpenRouter-compatible server on loopback. It serves what apf and its agents
//! use: models with prices, credits, management of capped and expiring keys, key info, chat
//! completions (plain and streamed, with tool calls and prompt caching) that cost money and are
//! refused with OpenRouter's own status codes and messages when a key or the account cannot pay,
//! and generation lookups. It injects latency, 429s, 5xx errors, dropped connections and late
//! spend on demand, and logs every request. Tests start it in-process with [`start`]; people run
//! it with `apf sim` ([`run`]). Nothing in it ever connects anywhere: the OpenRouter URLs in its
//! error messages are text.
//!
//! Differences from OpenRouter a careful client could notice: completions are scripted (see
//! `script`), a `:free` model has no request-rate cap, pricing `overrides` and `discount` are not
//! modelled, `/generation` and delayed spend appear together, a management key calling
//! `/chat/completions` gets 403 (OpenRouter's answer is undocumented), and the `/_sim/` routes
//! exist.

mod account_api;
mod cache;
mod catalog;
mod chat_api;
mod control;
mod cost;
mod errors;
mod faults;
mod ledger;
mod models_api;
mod reqlog;
mod script;
mod server;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::money::Usd;
use crate::secret::Secret;

pub use catalog::{CacheMode, Catalog, CatalogModel};
pub use faults::{Faults, ScriptedFault};
pub use ledger::AccountState;
pub use reqlog::LoggedRequest;

use cache::PromptCache;
use faults::FaultState;
use ledger::Ledger;
use reqlog::RequestLog;
use server::{BASE_PATH, Sim};

/// Lock a mutex, taking over its data if a panicking thread left it poisoned: the state is
/// always left consistent between statements, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Flags of `apf sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to listen on; loopback only (127.0.0.1, ::1). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The management key the simulator accepts (default: $OR_ADMIN_KEY, else one is generated
    /// and printed on stderr)
    #[arg(long, env = "OR_ADMIN_KEY", hide_env_values = true)]
    pub management_key: Option<String>,

    /// A TOML catalog of models and prices to serve, added to or replacing the built-in one
    /// (format: examples/sim/catalog.toml)
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,

    /// The account's total credits, in USD
    #[arg(long, value_name = "USD", default_value = "100")]
    pub credits: Usd,

    /// Seed for scripted completions and random faults; the same seed and requests give the same
    /// answers
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Latency added to every request, in milliseconds (for completions: the generation time,
    /// between admission and settlement)
    #[arg(long, value_name = "MS")]
    pub latency: Option<u64>,

    /// Share of requests answered 429 with Retry-After (0 to 1)
    #[arg(long, value_name = "F")]
    pub rate_429: Option<f64>,

    /// Share of requests answered with a 502 (0 to 1)
    #[arg(long = "rate-5xx", value_name = "F")]
    pub rate_5xx: Option<f64>,

    /// How late spend shows on /key, /keys, /credits and /generation, in milliseconds
    #[arg(long, value_name = "MS")]
    pub spend_delay: Option<u64>,

    /// Share of requests whose connection is dropped mid-response (0 to 1)
    #[arg(long, value_name = "F")]
    pub drop_rate: Option<f64>,

    /// A TOML fault file (format: examples/sim/faults.toml); the flags above override its values.
    /// SIGHUP or POST /api/v1/_sim/faults/reload reads it again
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,

    /// How many tool calls a scripted conversation with tools makes before its final answer
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub tool_calls: u32,

    /// Append every request (method, path, key hash, status, cost) to FILE as JSON lines
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

/// The simulator's resolved settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Loopback address to listen on.
    pub listen: SocketAddr,
    pub management_key: Secret,
    /// True when `management_key` was generated rather than given.
    pub management_key_generated: bool,
    pub catalog: Catalog,
    pub credits: Usd,
    pub seed: u64,
    pub faults: Faults,
    /// The fault file to re-read on reload.
    pub faults_file: Option<PathBuf>,
    pub tool_calls: u32,
    pub log_file: Option<PathBuf>,
}

impl Default for SimConfig {
    /// Built-in catalog, $100 of credits, seed 0, no faults, a generated management key.
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            management_key: Secret::new(ledger::new_key_plaintext()),
            management_key_generated: true,
            catalog: Catalog::builtin(),
            credits: Usd::new(100.into()),
            seed: 0,
            faults: Faults::default(),
            faults_file: None,
            tool_calls: 3,
            log_file: None,
        }
    }
}

fn check_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "apf sim listens on loopback only (127.0.0.1 or ::1), not {}",
        addr.ip()
    );
    Ok(())
}

impl SimConfig {
    /// Resolve flags, environment and files into settings.
    pub fn from_args(args: &SimArgs) -> anyhow::Result<SimConfig> {
        check_loopback(args.listen)?;
        let catalog = match &args.catalog {
            Some(path) => Catalog::load(path)?,
            None => Catalog::builtin(),
        };
        let mut faults = match &args.faults {
            Some(path) => Faults::load(path)?,
            None => Faults::default(),
        };
        apply_fault_flags(&mut faults, args);
        faults.validate().context("in the fault flags")?;
        let given = args.management_key.as_deref().map(str::trim).filter(|k| !k.is_empty());
        let defaults = SimConfig::default();
        Ok(SimConfig {
            listen: args.listen,
            management_key: given.map(Secret::new).unwrap_or(defaults.management_key),
            management_key_generated: given.is_none(),
            catalog,
            credits: args.credits,
            seed: args.seed,
            faults,
            faults_file: args.faults.clone(),
            tool_calls: args.tool_calls,
            log_file: args.log.clone(),
        })
    }
}

fn apply_fault_flags(faults: &mut Faults, args: &SimArgs) {
    if let Some(ms) = args.latency {
        faults.latency_ms = ms;
    }
    if let Some(rate) = args.rate_429 {
        faults.rate_429 = rate;
    }
    if let Some(rate) = args.rate_5xx {
        faults.rate_5xx = rate;
    }
    if let Some(ms) = args.spend_delay {
        faults.spend_delay_ms = ms;
    }
    if let Some(rate) = args.drop_rate {
        faults.drop_rate = rate;
    }
}

/// A running simulator. Dropping it stops the server too; [`SimHandle::shutdown`] also waits.
pub struct SimHandle {
    /// The API root, like `https://openrouter.ai/api/v1`: `http://127.0.0.1:PORT/api/v1`.
    pub base_url: String,
    pub management_key: Secret,
    /// The address the server listens on.
    pub addr: SocketAddr,
    sim: Arc<Sim>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// Start the simulator in this process.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    check_loopback(config.listen)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Sim {
        ledger: Mutex::new(Ledger::new(config.management_key.expose(), config.credits)),
        catalog: config.catalog,
        cache: Mutex::new(PromptCache::default()),
        faults: Mutex::new(FaultState::new(config.faults, config.seed)),
        faults_file: config.faults_file,
        log: RequestLog::new(config.log_file.as_deref())?,
        seed: config.seed,
        tool_calls: config.tool_calls,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = server::router(sim.clone());
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            // A dropped handle stops the server as surely as an explicit shutdown.
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("apf sim stopped serving: {e}");
        }
    });
    Ok(SimHandle {
        base_url: format!("http://{addr}{BASE_PATH}"),
        management_key: config.management_key,
        addr,
        sim,
        stop,
        task,
    })
}

impl SimHandle {
    /// Stop serving; waits up to five seconds for requests in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            abort.abort();
        }
    }

    /// Every API request so far, oldest first (`/_sim/` routes are not logged).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.sim.log.entries()
    }

    /// How many requests with `method` went to `route` (a template such as `/keys/{hash}`, or
    /// a literal path below the base URL such as `/keys`).
    pub fn count(&self, method: &str, route: &str) -> usize {
        self.sim.log.count(method, route)
    }

    /// Requests counted per `"METHOD /route"`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.sim.log.counts()
    }

    /// The account's credits, recorded and pending spend.
    pub fn account(&self) -> AccountState {
        self.sim.ledger().state()
    }

    pub fn faults(&self) -> Faults {
        lock(&self.sim.faults).faults.clone()
    }

    /// Replace the faults in force.
    pub fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        faults.validate()?;
        lock(&self.sim.faults).faults = faults;
        Ok(())
    }

    /// Read the `--faults` file again and put its faults in force.
    pub fn reload_faults(&self) -> anyhow::Result<Faults> {
        self.sim.reload_faults()
    }

    /// Set a key's recorded usage, as if it had spent `usd` (the account's usage moves too).
    pub fn set_key_usage(&self, hash: &str, usd: Usd) -> anyhow::Result<()> {
        anyhow::ensure!(!usd.is_negative(), "usage cannot be negative");
        anyhow::ensure!(self.sim.ledger().set_key_usage(hash, usd), "no key with hash {hash}");
        Ok(())
    }

    /// Set the account's total credits.
    pub fn set_credits(&self, usd: Usd) {
        self.sim.ledger().set_credits(usd);
    }
}

impl Sim {
    fn reload_faults(&self) -> anyhow::Result<Faults> {
        let path = self.faults_file.as_ref().context("no fault file was given (--faults)")?;
        let faults = Faults::load(path)?;
        lock(&self.faults).faults = faults.clone();
        Ok(faults)
    }
}

/// `apf sim`: start, print the base URL, serve until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = SimConfig::from_args(&args)?;
    let generated = config.management_key_generated.then(|| config.management_key.clone());
    let handle = start(config).await?;
    announce(&handle.base_url, generated.as_ref())?;
    wait_for_stop(&handle).await?;
    handle.shutdown().await;
    Ok(())
}

/// The base URL is the first line of stdout, so scripts can read it; a generated management key
/// goes to stderr, whole, because there is no other way to learn it and it guards no money.
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn announce(base_url: &str, generated_key: Option<&Secret>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{base_url}")?;
    out.flush()?;
    if let Some(key) = generated_key {
        eprintln!(
            "apf sim: generated management key (set OR_ADMIN_KEY or --management-key to choose \
             one): {}",
            key.expose()
        );
    }
    Ok(())
}

#[cfg(unix)]
async fn wait_for_stop(handle: &SimHandle) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r.map_err(Into::into),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => match handle.reload_faults() {
                Ok(_) => tracing::info!("apf sim: fault file reloaded"),
                Err(e) => tracing::warn!("apf sim: fault file not reloaded: {e:#}"),
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_stop(_handle: &SimHandle) -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_parse_and_resolve() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:4000",
            "--credits",
            "2.50",
            "--seed",
            "9",
            "--rate-429",
            "0.1",
            "--rate-5xx",
            "0.2",
            "--drop-rate",
            "0.05",
            "--latency",
            "30",
            "--spend-delay",
            "500",
            "--tool-calls",
            "5",
            "--management-key",
            "sk-or-v1-given",
        ])
        .expect("flags parse");
        let config = SimConfig::from_args(&cli.sim).expect("resolves");
        assert_eq!(config.credits, "2.50".parse().expect("usd"));
        assert_eq!((config.seed, config.tool_calls), (9, 5));
        let f = &config.faults;
        assert_eq!((f.rate_429, f.rate_5xx, f.drop_rate), (0.1, 0.2, 0.05));
        assert_eq!((f.latency_ms, f.spend_delay_ms), (30, 500));
        assert_eq!(config.management_key.expose(), "sk-or-v1-given");
        assert!(!config.management_key_generated);

        let too_much = Cli::try_parse_from(["sim", "--rate-429", "0.8", "--rate-5xx", "0.5"]);
        let err = SimConfig::from_args(&too_much.expect("parses").sim).expect_err("over 1");
        assert!(format!("{err:#}").contains("over 1"));
    }
}
