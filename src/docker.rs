//! The one module that runs `docker`. Every call is an argument vector, never a shell line, so
//! paths with spaces and untrusted names cannot change its meaning (HAZARDS H10). Failures are
//! told apart: docker could not be started, it exited non-zero, it was killed by a signal, or it
//! printed something unreadable. Secrets reach a container through the environment of the
//! docker client process (`-e NAME` with no value), so they never appear in any argv (H13).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::secret::Secret;

/// Label keys apf puts on every container it creates, so `destroy` finds them with no state.
pub const LABEL_MANAGED: &str = "dev.apf.managed";
pub const LABEL_EXPERIMENT: &str = "dev.apf.experiment";
pub const LABEL_RUN: &str = "dev.apf.run";
pub const LABEL_ALIAS: &str = "dev.apf.alias";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("could not start `{argv}`: {source}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{argv}` exited with {code}: {stderr}")]
    Failed { argv: String, code: i32, stderr: String },
    #[error("`{argv}` was killed by a signal")]
    Signalled { argv: String },
    #[error("`{argv}` printed something unreadable: {detail}")]
    Unreadable { argv: String, detail: String },
    #[error("`{argv}` did not finish within {secs}s")]
    TimedOut { argv: String, secs: u64 },
}

impl DockerError {
    /// True when docker answered that the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Failed { stderr, .. }
            if stderr.contains("No such") || stderr.contains("not found"))
    }
}

/// Everything needed to create one agent container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Plain variables, passed as `-e NAME=value`.
    pub env: BTreeMap<String, String>,
    /// Secret variables, passed by name only; the value travels in the docker client's own
    /// environment.
    pub secret_env: BTreeMap<String, Secret>,
    pub mounts: Vec<Bind>,
    pub network: Option<String>,
    pub memory: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub interactive: bool,
}

#[derive(Debug, Clone)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// What `docker inspect` says of a container's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub error: String,
}

/// A container found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

/// An image as `docker image inspect` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageInfo {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Vec<String>,
    #[serde(rename = "RepoDigests", default)]
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Docker {
    program: OsString,
    /// Longest a short docker command (inspect, kill, rm) may take.
    timeout: Duration,
}

impl Default for Docker {
    fn default() -> Docker {
        Docker {
            program: std::env::var_os("APF_DOCKER").unwrap_or_else(|| "docker".into()),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Docker {
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        // Ctrl-C reaches the whole foreground process group; apf decides what happens to its
        // containers, so no docker client may die of that signal halfway through a command.
        cmd.process_group(0);
        cmd
    }

    fn show(args: &[String]) -> String {
        let mut line = String::from("docker");
        for a in args {
            line.push(' ');
            if a.contains(char::is_whitespace) || a.is_empty() {
                line.push_str(&format!("{a:?}"));
            } else {
                line.push_str(a);
            }
        }
        crate::secret::redact(&line)
    }

    /// Run a short docker command and return its stdout.
    async fn output(
        &self,
        args: &[String],
        extra_env: &BTreeMap<String, Secret>,
    ) -> Result<String, DockerError> {
        let argv = Self::show(args);
        tracing::debug!("{argv}");
        let mut cmd = self.command(args);
        for (k, v) in extra_env {
            cmd.env(k, v.expose());
        }
        let run = cmd.output();
        let out = match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r.map_err(|source| DockerError::Spawn { argv: argv.clone(), source })?,
            Err(_) => return Err(DockerError::TimedOut { argv, secs: self.timeout.as_secs() }),
        };
        let stderr = crate::secret::redact(String::from_utf8_lossy(&out.stderr).trim());
        match out.status.code() {
            Some(0) => String::from_utf8(out.stdout)
                .map_err(|e| DockerError::Unreadable { argv, detail: e.to_string() }),
            Some(code) => Err(DockerError::Failed { argv, code, stderr }),
            None => Err(DockerError::Signalled { argv }),
        }
    }

    /// Whether docker answers at all, with its server version.
    pub async fn version(&self) -> Result<String, DockerError> {
        let args = strings(&["version", "--format", "{{.Server.Version}}"]);
        Ok(self.output(&args, &BTreeMap::new()).await?.trim().to_string())
    }

    /// The image by exact tag or digest, or `None` when it is not present locally.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, DockerError> {
        let args = strings(&["image", "inspect", "--format", "{{json .}}", reference]);
        match self.output(&args, &BTreeMap::new()).await {
            Ok(out) => serde_json::from_str(out.trim()).map(Some).map_err(|e| {
                DockerError::Unreadable { argv: Self::show(&args), detail: e.to_string() }
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `docker create` with every option as its own argument; returns the container id.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let args = create_args(spec);
        let out = self.output(&args, &spec.secret_env).await?;
        let id = out.trim().lines().last().unwrap_or("").to_string();
        if id.is_empty() {
            return Err(DockerError::Unreadable {
                argv: Self::show(&args),
                detail: "no container id".into(),
            });
        }
        Ok(id)
    }

    /// Start a created container attached, so its stdout and stderr stream to the child's
    /// pipes. With `stdin`, the container's stdin is the child's.
    pub fn start_attached(&self, id: &str, stdin: bool) -> Result<Child, DockerError> {
        let mut args = strings(&["start", "--attach"]);
        if stdin {
            args.push("--interactive".into());
        }
        args.push(id.to_string());
        let argv = Self::show(&args);
        tracing::debug!("{argv}");
        let mut cmd = self.command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin {
            cmd.stdin(Stdio::piped());
        }
        cmd.spawn().map_err(|source| DockerError::Spawn { argv, source })
    }

    pub async fn inspect(&self, id: &str) -> Result<ContainerState, DockerError> {
        let args = strings(&["container", "inspect", "--format", "{{json .State}}", id]);
        let out = self.output(&args, &BTreeMap::new()).await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct State {
            status: String,
            running: bool,
            exit_code: i64,
            #[serde(rename = "OOMKilled")]
            oom_killed: bool,
            #[serde(default)]
            error: String,
        }
        let s: State = serde_json::from_str(out.trim()).map_err(|e| DockerError::Unreadable {
            argv: Self::show(&args),
            detail: e.to_string(),
        })?;
        Ok(ContainerState {
            status: s.status,
            running: s.running,
            exit_code: s.exit_code,
            oom_killed: s.oom_killed,
            error: s.error,
        })
    }

    /// SIGKILL at once. A container that is already gone or stopped is not an error.
    pub async fn kill(&self, id: &str) -> Result<(), DockerError> {
        let args = strings(&["kill", "--signal", "KILL", id]);
        match self.output(&args, &BTreeMap::new()).await {
            Ok(_) => Ok(()),
            Err(DockerError::Failed { stderr, .. }) if stderr.contains("is not running") => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let args =
            vec!["stop".into(), "--time".into(), grace.as_secs().max(1).to_string(), id.into()];
        match self.output(&args, &BTreeMap::new()).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The last `lines` lines the container printed (stdout and stderr).
    pub async fn tail(&self, id: &str, lines: usize) -> Result<String, DockerError> {
        let args = vec!["logs".into(), "--tail".into(), lines.to_string(), id.into()];
        self.output(&args, &BTreeMap::new()).await
    }

    /// Remove a container; one that is already gone is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let args = strings(&["rm", "--force", id]);
        match self.output(&args, &BTreeMap::new()).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Containers (running or not) carrying every label in `labels`.
    pub async fn find(&self, labels: &[(&str, &str)]) -> Result<Vec<Found>, DockerError> {
        let mut args = strings(&["ps", "--all", "--no-trunc", "--format", "{{json .}}"]);
        for (k, v) in labels {
            args.push("--filter".into());
            args.push(if v.is_empty() { format!("label={k}") } else { format!("label={k}={v}") });
        }
        let out = self.output(&args, &BTreeMap::new()).await?;
        out.lines().filter(|l| !l.trim().is_empty()).map(|l| parse_ps_line(l, &args)).collect()
    }
}

fn parse_ps_line(line: &str, args: &[String]) -> Result<Found, DockerError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Row {
        #[serde(rename = "ID")]
        id: String,
        names: String,
        state: String,
        labels: String,
    }
    let row: Row = serde_json::from_str(line)
        .map_err(|e| DockerError::Unreadable { argv: Docker::show(args), detail: e.to_string() })?;
    let labels = row
        .labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Found { id: row.id, name: row.names, state: row.state, labels })
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// The argv of `docker create` for `spec`. Mounts always use `--mount type=bind`, which
/// refuses a missing source instead of creating it (H9).
pub fn create_args(spec: &ContainerSpec) -> Vec<String> {
    // An image missing locally is an error, never a pull from a registry.
    let mut a = strings(&["create", "--pull", "never", "--name"]);
    a.push(spec.name.clone());
    for (k, v) in &spec.labels {
        a.push("--label".into());
        a.push(format!("{k}={v}"));
    }
    for (k, v) in &spec.env {
        a.push("--env".into());
        a.push(format!("{k}={v}"));
    }
    for k in spec.secret_env.keys() {
        a.push("--env".into());
        a.push(k.clone());
    }
    for m in &spec.mounts {
        a.push("--mount".into());
        a.push(mount_arg(m));
    }
    if let Some(n) = &spec.network {
        a.push("--network".into());
        a.push(n.clone());
    }
    if let Some(m) = &spec.memory {
        a.push("--memory".into());
        a.push(m.clone());
    }
    if let Some(u) = &spec.user {
        a.push("--user".into());
        a.push(u.clone());
    }
    if spec.interactive {
        a.push("--interactive".into());
    }
    if let Some(ep) = &spec.entrypoint {
        a.push("--entrypoint".into());
        a.push(ep.first().cloned().unwrap_or_default());
    }
    a.push(spec.image.clone());
    if let Some(ep) = &spec.entrypoint {
        a.extend(ep.iter().skip(1).cloned());
    }
    if let Some(args) = &spec.args {
        a.extend(args.iter().cloned());
    }
    a
}

/// `type=bind,source=…,target=…[,readonly]`, quoting a field that holds a comma or a quote the
/// way docker's CSV parser expects.
fn mount_arg(m: &Bind) -> String {
    let field = |k: &str, v: &str| {
        let kv = format!("{k}={v}");
        if kv.contains(',') || kv.contains('"') {
            format!("\"{}\"", kv.replace('"', "\"\""))
        } else {
            kv
        }
    };
    let mut s = format!(
        "type=bind,{},{}",
        field("source", &m.source.display().to_string()),
        field("target", &m.target)
    );
    if m.read_only {
        s.push_str(",readonly");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "apf-x-r1-a".into(),
            image: "img:1".into(),
            labels: BTreeMap::from([(LABEL_RUN.into(), "r1".into())]),
            env: BTreeMap::from([("A".into(), "b c".into())]),
            secret_env: BTreeMap::from([(
                "OPENROUTER_API_KEY".into(),
                Secret::new("sk-or-v1-secret"),
            )]),
            mounts: vec![Bind {
                source: "/tmp/with space,comma".into(),
                target: "/w".into(),
                read_only: true,
            }],
            network: Some("host".into()),
            memory: None,
            user: None,
            entrypoint: None,
            args: Some(vec!["--flag".into()]),
            interactive: false,
        }
    }

    #[test]
    fn secrets_are_passed_by_name_only() {
        let args = create_args(&spec());
        assert!(args.iter().all(|a| !a.contains("sk-or-")), "{args:?}");
        assert!(args.windows(2).any(|w| w[0] == "--env" && w[1] == "OPENROUTER_API_KEY"));
    }

    #[test]
    fn mounts_are_bind_mounts_with_quoted_fields() {
        let args = create_args(&spec());
        let m = args.iter().position(|a| a == "--mount").unwrap();
        assert_eq!(args[m + 1], "type=bind,\"source=/tmp/with space,comma\",target=/w,readonly");
        assert_eq!(args.last().unwrap(), "--flag");
    }
}
