//! One model's life in a run: its key, its container, its events, and how it ended.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::OwnedSemaphorePermit;

use super::events::{self, Line};
use super::{Run, Stop, record_intent, save};
use crate::docker::{self, Bind, ContainerSpec};
use crate::manifest::ModelSettings;
use crate::manifest::resolve::{EnvSource, OUTPUT_DIR};
use crate::openrouter::wire;
use crate::printer;
use crate::secret::Secret;
use crate::state::{ContainerRecord, ExitRecord, KeyRecord, ModelStatus};

/// Keys outlive the run's timeout by this much, so a key left behind by a crash expires soon.
pub const KEY_EXPIRY_MARGIN: Duration = Duration::from_secs(15 * 60);

/// Run one model in its slot (`max_parallel`); `None` when the run stopped before a slot came.
pub(crate) async fn run_model(
    run: Arc<Run>,
    m: ModelSettings,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<()> {
    if permit.is_none() || *run.stop.borrow() != Stop::No {
        return finish(
            &run,
            &m.alias,
            ModelStatus::Skipped,
            Some("the run stopped before it started".into()),
        )
        .await;
    }
    if run.no_credits.load(Ordering::SeqCst) {
        let note = "not started: the account is out of credits".to_string();
        return finish(&run, &m.alias, ModelStatus::Skipped, Some(note)).await;
    }

    let key = match provision(&run, &m).await {
        Ok(k) => k,
        Err(note) => {
            printer::error(format!("{}: {note}", m.alias));
            return finish(&run, &m.alias, ModelStatus::Failed, Some(note)).await;
        }
    };
    if *run.stop.borrow() != Stop::No {
        return finish(
            &run,
            &m.alias,
            ModelStatus::Skipped,
            Some("the run stopped before it started".into()),
        )
        .await;
    }

    match run_container(&run, &m, key).await {
        Ok(()) => Ok(()),
        Err(note) => {
            printer::error(format!("{}: {note}", m.alias));
            finish(&run, &m.alias, ModelStatus::Failed, Some(note)).await
        }
    }
}

/// Mint the model's key, record its hash, and check that it reads back with its cap (HAZARDS
/// H6). On any failure the model is not started.
async fn provision(run: &Run, m: &ModelSettings) -> Result<Secret, String> {
    let (run_id, cap, attempt) = {
        let mut state = run.state.lock().await;
        let run_id = state.run_id.clone();
        let Some(ms) = state.models.get_mut(&m.alias) else {
            return Err("is not in the run's state".into());
        };
        ms.attempts += 1;
        (run_id, ms.remaining(), ms.attempts)
    };
    if cap <= crate::money::Usd::ZERO {
        return Err("has no budget left".into());
    }
    let name = if attempt > 1 {
        format!("{}-{attempt}", key_name(&run.exp.name, &run_id, &m.alias))
    } else {
        key_name(&run.exp.name, &run_id, &m.alias)
    };
    let lifetime = run.exp.container.timeout.saturating_add(KEY_EXPIRY_MARGIN);
    let expires = chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let body = wire::CreateKey {
        name: name.clone(),
        limit: Some(cap),
        limit_reset: None,
        include_byok_in_limit: Some(true),
        expires_at: Some(expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    };
    let (created, secret) = match run.client.create_key(&run.mgmt, &body).await {
        Ok(k) => k,
        Err(e) => {
            adopt_lost_key(run, &m.alias, &name, cap).await;
            return Err(format!("could not create its key: {e}"));
        }
    };
    {
        let mut state = run.state.lock().await;
        if let Some(ms) = state.models.get_mut(&m.alias) {
            ms.key =
                Some(KeyRecord { hash: created.hash.clone(), name, limit: cap, revoked: false });
        }
        save(run, &state);
    }
    let info = run
        .client
        .key_info(&secret)
        .await
        .map_err(|e| format!("its new key could not be read back: {e}"))?;
    if info.limit != Some(cap) {
        let shown = info.limit.map_or("no limit".to_string(), |l| l.to_string());
        return Err(format!("its new key reads back with {shown}, not its cap {cap}"));
    }
    Ok(secret)
}

/// A create whose answer was lost may still have made the key: find it by name and record it,
/// so teardown revokes it like any other.
async fn adopt_lost_key(run: &Run, alias: &str, name: &str, cap: crate::money::Usd) {
    let Ok(keys) = run.client.list_keys(&run.mgmt, true).await else { return };
    let Some(found) = keys.into_iter().find(|k| k.name == name) else { return };
    let mut state = run.state.lock().await;
    if let Some(ms) = state.models.get_mut(alias) {
        ms.key = Some(KeyRecord {
            hash: found.hash,
            name: name.to_string(),
            limit: cap,
            revoked: false,
        });
    }
    save(run, &state);
}

/// `apf/<experiment>/<run>/<alias>`: how `destroy` finds a run's keys with no state file.
pub fn key_name(experiment: &str, run_id: &str, alias: &str) -> String {
    format!("apf/{experiment}/{run_id}/{alias}")
}

pub fn container_name(experiment: &str, run_id: &str, alias: &str) -> String {
    format!("apf-{experiment}-{run_id}-{alias}")
}

fn spec(
    run: &Run,
    m: &ModelSettings,
    run_id: &str,
    key: Secret,
    base_url: &str,
) -> Result<ContainerSpec, String> {
    let exp = &run.exp;
    let mut env = std::collections::BTreeMap::new();
    for (k, v) in exp.container.env.iter().chain(m.env.iter()) {
        let value = match v {
            EnvSource::Literal(s) => s.clone(),
            EnvSource::Host(var) => std::env::var(var)
                .map_err(|_| format!("the environment variable {var} (for {k}) is not set"))?,
        };
        if value.trim_start().starts_with("sk-or-") {
            return Err(format!("{k} would pass an OpenRouter key into the container"));
        }
        env.insert(k.clone(), value);
    }
    env.insert("OPENROUTER_BASE_URL".into(), base_url.to_string());
    env.insert("APF_MODEL".into(), m.id.clone());
    env.insert("APF_ALIAS".into(), m.alias.clone());
    env.insert("APF_RUN".into(), run_id.to_string());
    env.insert("APF_EXPERIMENT".into(), exp.name.clone());

    let mut mounts: Vec<Bind> = exp
        .container
        .mounts
        .iter()
        .map(|b| Bind {
            source: b.source.clone(),
            target: b.target.clone(),
            read_only: b.read_only,
        })
        .collect();
    mounts.push(Bind {
        source: run.dir.output(&m.alias),
        target: OUTPUT_DIR.into(),
        read_only: false,
    });

    let labels = [
        (docker::LABEL_MANAGED, "true".to_string()),
        (docker::LABEL_EXPERIMENT, exp.name.clone()),
        (docker::LABEL_RUN, run_id.to_string()),
        (docker::LABEL_ALIAS, m.alias.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    Ok(ContainerSpec {
        name: container_name(&exp.name, run_id, &m.alias),
        image: exp.container.image.clone(),
        labels,
        env,
        secret_env: [("OPENROUTER_API_KEY".to_string(), key)].into_iter().collect(),
        mounts,
        network: run.network.clone(),
        memory: exp.container.memory.clone(),
        user: exp.container.user.clone(),
        entrypoint: exp.container.entrypoint.clone(),
        args: exp.container.args.clone(),
        interactive: exp.container.stdin.is_some(),
    })
}

async fn run_container(run: &Arc<Run>, m: &ModelSettings, key: Secret) -> Result<(), String> {
    let run_id = run.state.lock().await.run_id.clone();
    run.dir.create_model(&m.alias).map_err(|e| format!("{e:#}"))?;
    super::poll::write_budget(run, &m.alias).await;
    // In gateway mode the container holds a gateway token; the real key stays in apf.
    let (key, base_url) = match &run.metering {
        Some(g) => {
            let cap = {
                let state = run.state.lock().await;
                state.models.get(&m.alias).and_then(|s| s.key.as_ref()).map(|k| k.limit)
            };
            let cap = cap.ok_or("has no key")?;
            let token = g.register(&m.alias, key, cap).await.map_err(|e| format!("{e:#}"))?;
            (token, g.base_url().to_string())
        }
        None => (key, run.client.base_url().to_string()),
    };
    let spec = spec(run, m, &run_id, key, &base_url)?;
    let id = run
        .docker
        .create(&spec)
        .await
        .map_err(|e| format!("could not create its container: {e}"))?;
    {
        let mut state = run.state.lock().await;
        if let Some(ms) = state.models.get_mut(&m.alias) {
            ms.container =
                Some(ContainerRecord { id: id.clone(), name: spec.name.clone(), removed: false });
        }
        save(run, &state);
    }
    if *run.stop.borrow() != Stop::No {
        return finish(
            run,
            &m.alias,
            ModelStatus::Skipped,
            Some("the run stopped before it started".into()),
        )
        .await
        .map_err(|e| e.to_string());
    }

    let mut child = run
        .docker
        .start_attached(&id, spec.interactive)
        .map_err(|e| format!("could not start its container: {e}"))?;
    {
        let mut state = run.state.lock().await;
        if let Some(ms) = state.models.get_mut(&m.alias) {
            ms.status = ModelStatus::Running;
            ms.started_at = Some(Utc::now());
        }
        save(run, &state);
    }
    if let Some(l) = run.live.lock().await.get_mut(&m.alias) {
        l.started = Some(Instant::now());
        l.last_activity = Instant::now();
        l.running = true;
    }
    printer::info(format!("{}: started {} ({})", m.alias, spec.name, m.id));

    if let (Some(path), Some(mut stdin)) = (&run.exp.container.stdin, child.stdin.take()) {
        let prompt = tokio::fs::read(path).await.unwrap_or_default();
        let _ = stdin.write_all(&prompt).await;
        let _ = stdin.shutdown().await;
    }
    let out =
        child.stdout.take().map(|s| tokio::spawn(read_stdout(run.clone(), m.alias.clone(), s)));
    let err =
        child.stderr.take().map(|s| tokio::spawn(read_stderr(run.clone(), m.alias.clone(), s)));

    let timeout = run.exp.container.timeout;
    let mut stop = run.stop.subscribe();
    // An interrupt that lands while this container was being started finds it here: whatever
    // the order of events, a stopping run kills what it started.
    tokio::select! {
        _ = child.wait() => {}
        _ = tokio::time::sleep(timeout) => {
            let reason = format!("timeout: ran {}", crate::duration::Span(timeout));
            record_intent(run, &m.alias, &reason, "timeout", "stop").await;
            let _ = run.docker.stop(&id, run.exp.container.stop_grace).await;
        }
        () = async { drop(stop.wait_for(|s| *s != Stop::No).await) } => {
            record_intent(run, &m.alias, "interrupted", "interrupt", "kill").await;
            let _ = run.docker.kill(&id).await;
        }
    }
    let _ = child.wait().await;
    let mut seen = Seen::default();
    if let Some(t) = out {
        seen = t.await.unwrap_or_default();
    }
    if let Some(t) = err {
        let _ = t.await;
    }
    if let Some(l) = run.live.lock().await.get_mut(&m.alias) {
        l.running = false;
    }
    super::disable_key(run, &m.alias).await;
    conclude(run, m, &id, seen).await;
    Ok(())
}

/// What the event stream told about how the agent ended.
#[derive(Debug, Default, Clone)]
struct Seen {
    done: bool,
    key_limit: bool,
    no_credits: bool,
}

async fn read_stdout(run: Arc<Run>, alias: String, stdout: tokio::process::ChildStdout) -> Seen {
    let mut seen = Seen::default();
    let mut events_file = open_append(&run.dir.events(&alias)).await;
    let mut log_file = open_append(&run.dir.log(&alias)).await;
    let mut timed = open_append(&run.dir.output_log(&alias)).await;
    // Bytes, decoded leniently: an agent that prints invalid UTF-8 must not end its own
    // supervision.
    let mut lines = BufReader::new(stdout).split(b'\n');
    while let Ok(Some(bytes)) = lines.next_segment().await {
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches('\r');
        match events::parse(line, &run.exp.events) {
            Line::Event(e) => {
                seen.done |= e.class.done;
                if e.class.error {
                    match refusal(&e) {
                        Some(Refusal::KeyCap) => seen.key_limit = true,
                        Some(Refusal::Account) => seen.no_credits = true,
                        None => {}
                    }
                }
                let record = serde_json::json!({ "at": Utc::now(), "event": e.body });
                let text = crate::secret::redact(&record.to_string());
                write_line(&mut events_file, &text).await;
                count(&run, &alias, &e).await;
            }
            Line::Log(text) => {
                let text = crate::secret::redact(&text);
                write_timed(&mut timed, "stdout", &text).await;
                write_line(&mut log_file, &text).await;
                let mut state = run.state.lock().await;
                if let Some(ms) = state.models.get_mut(&alias) {
                    ms.counts.log_lines += 1;
                }
            }
        }
    }
    seen
}

/// Who refused an agent's request, from the error event it printed (HAZARDS H2).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// 403 "Key limit exceeded", or a 402 that points at the key's limit: the key's cap.
    KeyCap,
    /// Any other 402: the account cannot pay.
    Account,
}

fn refusal(e: &events::Event) -> Option<Refusal> {
    let text = serde_json::Value::Object(e.body.clone()).to_string();
    let about_key = text.contains("Key limit exceeded")
        || text.contains("settings/keys")
        || text.contains("key_limit");
    match e.status() {
        Some(403) if about_key => Some(Refusal::KeyCap),
        Some(402) if about_key => Some(Refusal::KeyCap),
        Some(402) => Some(Refusal::Account),
        _ => None,
    }
}

async fn count(run: &Run, alias: &str, e: &events::Event) {
    let spent = {
        let mut state = run.state.lock().await;
        let Some(ms) = state.models.get_mut(alias) else { return };
        let c = &mut ms.counts;
        c.events += 1;
        c.tool_calls += u64::from(e.class.tool_call);
        c.snapshots += u64::from(e.class.snapshot);
        c.progress += u64::from(e.class.progress);
        c.errors += u64::from(e.class.error);
        ms.last_event_at = Some(Utc::now());
        ms.spent
    };
    let mut live = run.live.lock().await;
    if let Some(l) = live.get_mut(alias) {
        l.last_activity = Instant::now();
        if e.class.progress {
            l.spent_at_progress = spent;
        }
        if e.class.tool_call {
            l.actions.push((e.action_name(), spent));
        }
    }
}

async fn read_stderr(run: Arc<Run>, alias: String, stderr: tokio::process::ChildStderr) {
    let mut log_file = open_append(&run.dir.log(&alias)).await;
    let mut timed = open_append(&run.dir.output_log(&alias)).await;
    let mut lines = BufReader::new(stderr).split(b'\n');
    while let Ok(Some(bytes)) = lines.next_segment().await {
        let line = String::from_utf8_lossy(&bytes);
        write_timed(&mut timed, "stderr", &crate::secret::redact(&line)).await;
        write_line(&mut log_file, &format!("[stderr] {}", crate::secret::redact(&line))).await;
    }
}

async fn open_append(path: &std::path::Path) -> Option<tokio::fs::File> {
    tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.ok()
}

async fn write_timed(file: &mut Option<tokio::fs::File>, stream: &str, line: &str) {
    let record = serde_json::json!({ "at": Utc::now(), "stream": stream, "line": line });
    write_line(file, &record.to_string()).await;
}

async fn write_line(file: &mut Option<tokio::fs::File>, text: &str) {
    if let Some(f) = file {
        let _ = f.write_all(format!("{text}\n").as_bytes()).await;
    }
}

/// Read how the container ended, tell the cause apart (HAZARDS H11), and record the outcome.
async fn conclude(run: &Arc<Run>, m: &ModelSettings, id: &str, seen: Seen) {
    let inspected = run.docker.inspect(id).await;
    let last_lines: Vec<String> = run
        .docker
        .tail(id, 20)
        .await
        .map(|t| t.lines().map(printer::sanitize).collect())
        .unwrap_or_default();
    let (intent, spent, budget) = {
        let state = run.state.lock().await;
        let ms = state.models.get(&m.alias);
        (ms.and_then(|s| s.intent.clone()), ms.map(|s| s.spent), ms.map(|s| s.budget))
    };
    let (code, oom) = match &inspected {
        Ok(s) => (s.exit_code, s.oom_killed),
        Err(_) => (-1, false),
    };
    let cause = match &inspected {
        Err(e) if e.is_not_found() => "removed from outside before apf could read its end".into(),
        Err(e) => format!("its end could not be read: {e}"),
        Ok(_) => {
            exit_cause(code, oom, intent.as_ref().map(|i| (i.rule.as_str(), i.signal.as_str())))
        }
    };

    let (status, note) = if let Some(i) = &intent {
        if i.rule == "interrupt" {
            (ModelStatus::Interrupted, format!("interrupted ({cause})"))
        } else {
            (ModelStatus::Ejected, i.reason.clone())
        }
    } else if seen.no_credits {
        run.no_credits.store(true, Ordering::SeqCst);
        let note = "account out of credits (402): raising the budget will not help".to_string();
        printer::error(format!("{}: {note}; no further models will start", m.alias));
        (ModelStatus::NoCredits, note)
    } else if seen.key_limit || spent.zip(budget).is_some_and(|(s, b)| s >= b) {
        (ModelStatus::BudgetSpent, "budget spent (key cap)".to_string())
    } else if code == 0 || seen.done {
        (ModelStatus::Done, cause.clone())
    } else {
        let left = match (spent, budget) {
            (Some(s), Some(b)) if s > crate::money::Usd::ZERO => {
                format!(" with {} of {b} left", (b - s).max(crate::money::Usd::ZERO))
            }
            _ => String::new(),
        };
        (ModelStatus::Failed, format!("{cause}{left}"))
    };

    {
        let mut state = run.state.lock().await;
        if let Some(ms) = state.models.get_mut(&m.alias) {
            ms.exit = Some(ExitRecord { code, oom_killed: oom, cause: cause.clone(), last_lines });
        }
    }
    let said = if note.starts_with(status.as_str()) {
        note.clone()
    } else {
        format!("{} ({note})", status.as_str())
    };
    printer::info(format!("{}: {said}", m.alias));
    let _ = finish(run, &m.alias, status, Some(note)).await;
}

/// One sentence on why a container's process ended.
pub fn exit_cause(code: i64, oom_killed: bool, intent: Option<(&str, &str)>) -> String {
    match (oom_killed, intent, code) {
        (true, _, _) => "OOM-killed".into(),
        (false, Some((rule, "kill")), _) => format!("killed by apf: {rule}"),
        (false, Some(_), 137) => "stopped after grace (SIGKILL)".into(),
        (false, Some((rule, _)), c) => format!("stopped by apf: {rule} (exit code {c})"),
        (false, None, 137) => "killed from outside (SIGKILL)".into(),
        (false, None, 143) => "terminated from outside (SIGTERM)".into(),
        (false, None, c) => format!("exited with code {c}"),
    }
}

async fn finish(run: &Run, alias: &str, status: ModelStatus, note: Option<String>) -> Result<()> {
    let mut state = run.state.lock().await;
    if let Some(ms) = state.models.get_mut(alias) {
        ms.status = status;
        if note.is_some() {
            ms.note = note;
        }
        ms.ended_at = Some(Utc::now());
    }
    save(run, &state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> events::Event {
        match events::parse(json, &Default::default()) {
            events::Line::Event(e) => e,
            events::Line::Log(_) => panic!("not an event: {json}"),
        }
    }

    #[test]
    fn a_key_cap_and_an_empty_account_are_told_apart() {
        let cap = r#"{"type":"error","status":403,"message":"Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"}"#;
        assert_eq!(refusal(&event(cap)), Some(Refusal::KeyCap));
        let key_402 = r#"{"type":"error","status":402,"message":"This request requires more credits, or fewer max_tokens. You requested up to 512 tokens, but can only afford 80. To increase, visit https://openrouter.ai/settings/keys and create a key with a higher monthly limit"}"#;
        assert_eq!(refusal(&event(key_402)), Some(Refusal::KeyCap));
        let account = r#"{"type":"error","status":402,"message":"Insufficient credits. Add more using https://openrouter.ai/settings/credits"}"#;
        assert_eq!(refusal(&event(account)), Some(Refusal::Account));
        assert_eq!(refusal(&event(r#"{"type":"error","message":"tool failed"}"#)), None);
    }

    #[test]
    fn exit_137_is_told_apart_by_intent_and_oom_flag() {
        assert_eq!(exit_cause(137, true, None), "OOM-killed");
        assert_eq!(
            exit_cause(137, false, Some(("budget_exceeded", "kill"))),
            "killed by apf: budget_exceeded"
        );
        assert_eq!(exit_cause(137, false, Some(("idle", "stop"))), "stopped after grace (SIGKILL)");
        assert_eq!(exit_cause(137, false, None), "killed from outside (SIGKILL)");
        assert_eq!(exit_cause(0, false, None), "exited with code 0");
    }
}
