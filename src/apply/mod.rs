//! `apf apply`: provision a capped key per model, run the containers, supervise them, eject by
//! policy, and always tear down. The shape of a run:
//!
//! - one task per model (at most `max_parallel` past their key) that mints its key, records the
//!   key's hash in the state before anything else, checks the key reads back with its cap,
//!   creates and starts its container, reads its events, and records how it ended;
//! - one poll task that reads every key's spend with one listing per poll and applies the
//!   eject rules;
//! - one task that rewrites each running model's `budget.txt` on the host side of its output
//!   mount, so a container that hangs or vanishes cannot delay anything (HAZARDS H12);
//! - a teardown that runs whatever happened before it: kill what still runs, disable every
//!   key, read spend until it settles, delete the keys, remove the containers, write results.

pub mod budget_file;
pub mod eject;
pub mod events;
mod metering;
mod model;
pub use model::{KEY_EXPIRY_MARGIN, container_name, key_name};
mod poll;
mod progress;
pub mod results;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use tokio::sync::{Mutex, Semaphore, watch};

use crate::docker::Docker;
use crate::manifest::Experiment;
use crate::money::Usd;
use crate::openrouter::{Client, wire};
use crate::printer;
use crate::secret::Secret;
use crate::state::{Intent, ModelState, ModelStatus, RunDir, RunLock, RunState, RunStatus};

/// How far a run has been asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    No,
    /// First Ctrl-C: start nothing new, kill what runs, clean up fully.
    Interrupt,
    /// Second Ctrl-C: skip the waits, but still clean up.
    Hurry,
}

/// What apply needs besides the experiment.
pub struct Settings {
    pub base_url: String,
    pub management_key: Secret,
    /// Longest time teardown waits for spend to settle.
    pub settle: Duration,
    /// Start a new run instead of resuming an interrupted one.
    pub fresh: bool,
}

/// Everything the tasks of a run share.
pub(crate) struct Run {
    pub exp: Experiment,
    pub client: Client,
    pub mgmt: Secret,
    pub docker: Docker,
    pub dir: RunDir,
    pub state: Mutex<RunState>,
    pub live: Mutex<BTreeMap<String, Live>>,
    pub stop: watch::Sender<Stop>,
    /// Set when an agent met 402: the account cannot pay, so no further model starts.
    pub no_credits: AtomicBool,
    pub network: Option<String>,
    pub settle: Duration,
    /// The metering gateway, in gateway mode.
    pub metering: Option<metering::Metering>,
}

/// What apf knows of a model while it runs and does not persist.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub started: Option<Instant>,
    pub last_activity: Instant,
    pub spent_at_progress: Usd,
    pub actions: Vec<(String, Usd)>,
    pub warned: Vec<usize>,
    pub ejecting: bool,
    pub running: bool,
    pub key_disabled: bool,
}

impl Live {
    fn new() -> Live {
        Live {
            started: None,
            last_activity: Instant::now(),
            spent_at_progress: Usd::ZERO,
            actions: Vec::new(),
            warned: Vec::new(),
            ejecting: false,
            running: false,
            key_disabled: false,
        }
    }
}

/// The end of an apply, for the exit code.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_id: String,
    pub interrupted: bool,
    pub state: RunState,
}

/// Run the experiment for real. Teardown runs however the run ends.
pub async fn apply(exp: Experiment, settings: Settings) -> Result<Outcome> {
    let metering = match exp.budget.enforce {
        crate::manifest::resolve::Enforce::Gateway => {
            Some(metering::Metering::start(&exp, &settings.base_url).await?)
        }
        crate::manifest::resolve::Enforce::Key => None,
    };
    let found = if settings.fresh { None } else { resumable(&exp)? };
    let (Prepared { dir, lock, state, to_run }, resumed) = match found {
        Some(p) => (p, true),
        None => (new_run(&exp, &settings)?, false),
    };
    let _lock = lock;
    let run_id = state.run_id.clone();
    crate::state::write_atomic(
        &crate::state::runs_dir(&exp.manifest_dir).join("latest"),
        run_id.as_bytes(),
    )?;

    // The gateway listens on loopback, which only the host's network reaches.
    let network = match metering {
        Some(_) => Some("host".to_string()),
        None => network_for(&exp, &settings.base_url),
    };
    let live = exp.models.iter().map(|m| (m.alias.clone(), Live::new())).collect();
    let (stop, _) = watch::channel(Stop::No);
    let run = Arc::new(Run {
        client: Client::new(&settings.base_url),
        mgmt: settings.management_key,
        docker: Docker::default(),
        dir,
        state: Mutex::new(state),
        live: Mutex::new(live),
        stop,
        no_credits: AtomicBool::new(false),
        network,
        settle: settings.settle,
        metering,
        exp,
    });

    printer::info(format!("run {run_id}: {} models", to_run.len()));
    let signals = tokio::spawn(watch_signals(run.clone()));
    let progress = progress::Progress::start(&run);
    let follower = tokio::spawn(metering::follow(run.clone()));
    let result = match resumed {
        true => retire_earlier_attempts(&run).await,
        false => Ok(()),
    };
    let result = match result {
        Ok(()) => supervise(run.clone(), &to_run).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        printer::error(format!("{e:#}"));
        // Read first: a borrow held while sending would deadlock the watch.
        let now = *run.stop.borrow();
        run.stop.send_replace(Stop::Interrupt.max(now));
    }
    if let Some(p) = progress {
        p.finish();
    }
    teardown(&run).await;
    follower.abort();
    signals.abort();

    let state = run.state.lock().await.clone();
    let interrupted = state.status == RunStatus::Interrupted;
    result.map(|_| Outcome { run_id, interrupted, state })
}

/// A bridged container cannot reach the host's loopback, where the simulator (or a local
/// gateway) listens; such runs use the host's network unless the manifest says otherwise.
fn network_for(exp: &Experiment, base_url: &str) -> Option<String> {
    use crate::manifest::resolve::Network;
    match exp.container.network {
        Some(Network::Bridge) => Some("bridge".into()),
        Some(Network::Host) => Some("host".into()),
        Some(Network::None) => Some("none".into()),
        None if is_loopback_url(base_url) => Some("host".into()),
        None => None,
    }
}

pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A run ready to supervise: its folder, its held lock, its state, and the models to start.
struct Prepared {
    dir: RunDir,
    lock: RunLock,
    state: RunState,
    to_run: Vec<String>,
}

/// A fresh run: its folder, its lock, its state with every model pending.
fn new_run(exp: &Experiment, settings: &Settings) -> Result<Prepared> {
    let run_id = crate::state::new_run_id();
    let dir = RunDir::new(&exp.manifest_dir, &run_id);
    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("could not create the run folder {}", dir.root.display()))?;
    let lock = RunLock::acquire(&dir)?;
    let models = exp
        .models
        .iter()
        .map(|m| (m.alias.clone(), ModelState::new(&m.alias, &m.id, m.budget)))
        .collect();
    let state = RunState {
        format_version: crate::state::STATE_FORMAT,
        run_id,
        experiment: exp.name.clone(),
        manifest_path: exp.manifest_path.clone(),
        manifest_hash: exp.manifest_hash.clone(),
        base_url: settings.base_url.clone(),
        started_at: Utc::now(),
        finished_at: None,
        status: RunStatus::Running,
        poll_every_ms: u64::try_from(exp.budget.poll_every.as_millis()).unwrap_or(u64::MAX),
        note: None,
        models,
    };
    state.save(&dir)?;
    let to_run = exp.models.iter().map(|m| m.alias.clone()).collect();
    Ok(Prepared { dir, lock, state, to_run })
}

/// The latest run of this very manifest, when it was interrupted or crashed: applying again
/// resumes it, starting only the models that did not finish, each capped at what remains of
/// its budget. A run whose lock is held is being applied right now, and is refused.
fn resumable(exp: &Experiment) -> Result<Option<Prepared>> {
    let Some((id, _)) = crate::state::list_runs(&exp.manifest_dir).into_iter().next() else {
        return Ok(None);
    };
    let dir = RunDir::new(&exp.manifest_dir, &id);
    let Ok(mut state) = RunState::load(&dir.state()) else { return Ok(None) };
    let same = state.experiment == exp.name && state.manifest_hash == exp.manifest_hash;
    if !same || !matches!(state.status, RunStatus::Interrupted | RunStatus::Running) {
        return Ok(None);
    }
    let lock = RunLock::acquire(&dir)?;
    let mut to_run = Vec::new();
    for m in state.models.values_mut() {
        if !m.unfinished() {
            continue;
        }
        if m.remaining() <= Usd::ZERO {
            m.status = ModelStatus::BudgetSpent;
            m.note = Some("budget spent before the run was resumed".into());
            continue;
        }
        m.prepare_retry();
        to_run.push(m.alias.clone());
    }
    state.status = RunStatus::Running;
    state.finished_at = None;
    state.save(&dir)?;
    printer::info(format!(
        "resuming run {id}: {} of {} models did not finish",
        to_run.len(),
        state.models.len()
    ));
    Ok(Some(Prepared { dir, lock, state, to_run }))
}

/// Before a resumed run starts anything, remove what its earlier attempt left (containers, and
/// keys a killed apf could not revoke), and settle each model's spend on its old key.
async fn retire_earlier_attempts(run: &Arc<Run>) -> Result<()> {
    let run_id = run.state.lock().await.run_id.clone();
    let labels =
        [(crate::docker::LABEL_MANAGED, "true"), (crate::docker::LABEL_RUN, run_id.as_str())];
    for c in run.docker.find(&labels).await? {
        run.docker.remove(&c.id).await?;
    }
    let live: Vec<(String, String)> = {
        let state = run.state.lock().await;
        state
            .models
            .values()
            .filter_map(|m| {
                m.earlier_keys
                    .last()
                    .filter(|k| !k.revoked)
                    .map(|k| (m.alias.clone(), k.hash.clone()))
            })
            .collect()
    };
    let usage: BTreeMap<String, Usd> = if live.is_empty() {
        BTreeMap::new()
    } else {
        run.client
            .list_keys(&run.mgmt, true)
            .await?
            .into_iter()
            .map(|k| (k.hash, k.usage))
            .collect()
    };
    for (alias, hash) in &live {
        run.client.delete_key(&run.mgmt, hash).await?;
        let mut state = run.state.lock().await;
        if let Some(m) = state.models.get_mut(alias) {
            let last = m.spent - m.spent_earlier;
            let used = usage.get(hash).copied().unwrap_or(last).max(last);
            m.spent_earlier += used;
            m.spent = m.spent_earlier;
            if let Some(k) = m.earlier_keys.last_mut() {
                k.revoked = true;
            }
        }
        save(run, &state);
    }
    let mut state = run.state.lock().await;
    for m in state.models.values_mut().filter(|m| m.status == ModelStatus::Pending) {
        m.spent_earlier = m.spent;
    }
    save(run, &state);
    Ok(())
}

async fn supervise(run: Arc<Run>, to_run: &[String]) -> Result<()> {
    let max = run.exp.container.max_parallel.min(to_run.len().max(1));
    let slots = Arc::new(Semaphore::new(max));
    let poller = tokio::spawn(poll::poll_loop(run.clone()));
    let injector = tokio::spawn(poll::budget_loop(run.clone()));

    // Slots are handed out in the manifest's order, so with `max_parallel` the first models
    // start first, and a model that learns the account is empty stops the ones after it.
    let mut tasks = Vec::new();
    let mut stop = run.stop.subscribe();
    for m in run.exp.models.iter().filter(|m| to_run.contains(&m.alias)).cloned() {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.ok(),
            () = async { drop(stop.wait_for(|s| *s != Stop::No).await) } => None,
        };
        let run = run.clone();
        tasks.push(tokio::spawn(async move { model::run_model(run, m, permit).await }));
    }
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(anyhow::anyhow!("a model's task failed: {join}"));
            }
        }
    }
    poller.abort();
    injector.abort();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Ctrl-C, SIGTERM or SIGHUP (a closed terminal) once: interrupt; twice: hurry.
async fn watch_signals(run: Arc<Run>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        let got = async {
            let term = async {
                match term.as_mut() {
                    Some(t) => drop(t.recv().await),
                    None => std::future::pending().await,
                }
            };
            let hup = async {
                match hup.as_mut() {
                    Some(h) => drop(h.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {}, () = hup => {} }
        };
        got.await;
        let now = *run.stop.borrow();
        if now == Stop::No {
            printer::warn(
                "interrupted: stopping every container and revoking every key (again to skip waits)",
            );
            run.stop.send_replace(Stop::Interrupt);
            interrupt_all(&run).await;
        } else {
            printer::warn("interrupted again: skipping waits, still cleaning up");
            run.stop.send_replace(Stop::Hurry);
        }
    }
}

/// Kill every running container of the run, recording why first.
async fn interrupt_all(run: &Arc<Run>) {
    let ids: Vec<(String, String)> = {
        let state = run.state.lock().await;
        state
            .models
            .values()
            .filter(|m| !m.status.is_final())
            .filter_map(|m| m.container.as_ref().map(|c| (m.alias.clone(), c.id.clone())))
            .collect()
    };
    for (alias, id) in ids {
        record_intent(run, &alias, "interrupted", "interrupt", "kill").await;
        if let Err(e) = run.docker.kill(&id).await {
            printer::warn(format!("{alias}: could not kill its container: {e}"));
        }
    }
}

pub(crate) async fn record_intent(run: &Run, alias: &str, reason: &str, rule: &str, signal: &str) {
    let mut state = run.state.lock().await;
    if let Some(m) = state.models.get_mut(alias)
        && m.intent.is_none()
    {
        m.intent = Some(Intent {
            reason: reason.into(),
            rule: rule.into(),
            signal: signal.into(),
            at: Utc::now(),
        });
    }
    save(run, &state);
}

/// Persist the state; a failed write is reported but does not stop a run that holds money.
pub(crate) fn save(run: &Run, state: &RunState) {
    if let Err(e) = state.save(&run.dir) {
        printer::warn(format!("{e:#}"));
    }
}

/// Disable a model's key so it can spend no more. The key stays readable for the final spend.
pub(crate) async fn disable_key(run: &Run, alias: &str) {
    let hash = {
        let state = run.state.lock().await;
        state
            .models
            .get(alias)
            .and_then(|m| m.key.as_ref())
            .filter(|k| !k.revoked)
            .map(|k| k.hash.clone())
    };
    if let Some(m) = &run.metering {
        m.revoke(alias).await;
    }
    let Some(hash) = hash else { return };
    let body = wire::UpdateKey { disabled: Some(true), ..Default::default() };
    match run.client.update_key(&run.mgmt, &hash, &body).await {
        Ok(_) => {
            if let Some(l) = run.live.lock().await.get_mut(alias) {
                l.key_disabled = true;
            }
        }
        Err(e) => printer::warn(format!("{alias}: could not disable its key: {e}")),
    }
}

async fn teardown(run: &Arc<Run>) {
    // Anything still running is stopped first: nothing may outlive apply.
    interrupt_all(run).await;
    if let Some(m) = &run.metering {
        m.shutdown().await;
    }
    let aliases: Vec<String> = run.exp.models.iter().map(|m| m.alias.clone()).collect();
    for alias in &aliases {
        disable_key(run, alias).await;
    }
    let settled = *run.stop.borrow() != Stop::Hurry && poll::settle(run).await;
    if settled {
        let mut state = run.state.lock().await;
        for m in state.models.values_mut().filter(|m| m.key.is_some()) {
            m.spend_settled = true;
        }
        save(run, &state);
    }
    revoke_keys(run).await;
    remove_containers(run).await;
    finish_state(run).await;
}

async fn revoke_keys(run: &Arc<Run>) {
    let keys: Vec<(String, String)> = {
        let state = run.state.lock().await;
        state
            .models
            .values()
            .filter_map(|m| {
                m.key.as_ref().filter(|k| !k.revoked).map(|k| (m.alias.clone(), k.hash.clone()))
            })
            .collect()
    };
    for (alias, hash) in keys {
        match run.client.delete_key(&run.mgmt, &hash).await {
            Ok(()) => {
                let mut state = run.state.lock().await;
                if let Some(k) = state.models.get_mut(&alias).and_then(|m| m.key.as_mut()) {
                    k.revoked = true;
                }
                save(run, &state);
            }
            Err(e) => printer::error(format!(
                "{alias}: could not delete its key (hash {hash}); run `apf destroy {}`: {e}",
                run.dir.root.file_name().and_then(|n| n.to_str()).unwrap_or("")
            )),
        }
    }
}

async fn remove_containers(run: &Arc<Run>) {
    let ids: Vec<(String, String)> = {
        let state = run.state.lock().await;
        state
            .models
            .values()
            .filter_map(|m| {
                m.container.as_ref().filter(|c| !c.removed).map(|c| (m.alias.clone(), c.id.clone()))
            })
            .collect()
    };
    for (alias, id) in ids {
        match run.docker.remove(&id).await {
            Ok(()) => {
                let mut state = run.state.lock().await;
                if let Some(c) = state.models.get_mut(&alias).and_then(|m| m.container.as_mut()) {
                    c.removed = true;
                }
                save(run, &state);
            }
            Err(e) => printer::error(format!("{alias}: could not remove its container: {e}")),
        }
    }
    // A container whose create was cut short never reached the state; its labels still name
    // the run.
    let run_id = run.state.lock().await.run_id.clone();
    let labels =
        [(crate::docker::LABEL_MANAGED, "true"), (crate::docker::LABEL_RUN, run_id.as_str())];
    match run.docker.find(&labels).await {
        Ok(found) => {
            for c in found {
                if let Err(e) = run.docker.remove(&c.id).await {
                    printer::error(format!("could not remove the container {}: {e}", c.name));
                }
            }
        }
        Err(e) => printer::error(format!("could not look for the run's containers: {e}")),
    }
}

async fn finish_state(run: &Arc<Run>) {
    let stop = *run.stop.borrow();
    let mut state = run.state.lock().await;
    for m in state.models.values_mut() {
        if !m.status.is_final() {
            m.status =
                if m.container.is_some() { ModelStatus::Interrupted } else { ModelStatus::Skipped };
        }
        if m.ended_at.is_none() && m.started_at.is_some() {
            m.ended_at = Some(Utc::now());
        }
    }
    state.finished_at = Some(Utc::now());
    state.status = if stop != Stop::No {
        RunStatus::Interrupted
    } else if run.no_credits.load(Ordering::SeqCst) {
        state.note = Some("the account ran out of credits; raising budgets will not help".into());
        RunStatus::Failed
    } else {
        RunStatus::Finished
    };
    save(run, &state);
    let results = results::Results::from_state(&state);
    if let Err(e) = results.write(&run.dir) {
        printer::warn(format!("{e:#}"));
    }
}
