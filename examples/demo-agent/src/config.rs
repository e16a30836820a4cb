//! The agent's settings, resolved from its environment once, before it does anything.
//!
//! apf sets `OPENROUTER_API_KEY`, `OPENROUTER_BASE_URL`, `APF_MODEL`, `APF_ALIAS` and `APF_RUN`;
//! the `DEMO_*` variables choose a behaviour for apf's tests. An empty variable counts as unset.
//! There is deliberately no default base URL: the agent talks only to the server it is given.

use std::path::PathBuf;
use std::time::Duration;

use crate::exit::{Failure, code};
use crate::url::BaseUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Work,
    Idle,
    Spin,
    SilentSpend,
    Crash,
    Oom,
    SleepThenWork,
}

impl Mode {
    pub const NAMES: &str = "work, idle, spin, silent-spend, crash, oom, sleep-then-work";

    fn parse(text: &str) -> Option<Mode> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "work" => Mode::Work,
            "idle" => Mode::Idle,
            "spin" => Mode::Spin,
            "silent-spend" => Mode::SilentSpend,
            "crash" => Mode::Crash,
            "oom" => Mode::Oom,
            "sleep-then-work" => Mode::SleepThenWork,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Work => "work",
            Mode::Idle => "idle",
            Mode::Spin => "spin",
            Mode::SilentSpend => "silent-spend",
            Mode::Crash => "crash",
            Mode::Oom => "oom",
            Mode::SleepThenWork => "sleep-then-work",
        }
    }

    /// Whether the mode talks to the model, and so needs a key and a base URL.
    fn calls_model(self) -> bool {
        matches!(self, Mode::Work | Mode::Spin | Mode::SilentSpend | Mode::SleepThenWork)
    }
}

/// The key and the server, present only for the modes that call the model.
#[derive(Clone)]
pub struct Api {
    pub key: String,
    pub url: BaseUrl,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("key", &"[hidden]").field("url", &self.url).finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub api: Option<Api>,
    pub model: String,
    pub max_tokens: u32,
    /// `None` when `DEMO_MAX_TURNS` is unset; `work` then stops at 50 turns, the spending modes
    /// never stop by themselves.
    pub max_turns: Option<u32>,
    pub turn_delay: Duration,
    pub sleep: Duration,
    pub task_path: PathBuf,
    pub output: PathBuf,
    pub http_timeout: Duration,
    pub stdin_timeout: Duration,
    pub oom_max_mb: u64,
    pub alias: Option<String>,
    pub run: Option<String>,
}

pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";
pub const DEFAULT_WORK_TURNS: u32 = 50;

impl Config {
    /// Resolve every setting through `var`, which returns a variable's non-empty value.
    pub fn resolve(var: &dyn Fn(&str) -> Option<String>) -> Result<Config, Failure> {
        let mode = match var("DEMO_MODE") {
            None => Mode::Work,
            Some(text) => Mode::parse(&text).ok_or_else(|| {
                config_error(format!("DEMO_MODE `{text}` is not one of {}", Mode::NAMES))
            })?,
        };
        let api = if mode.calls_model() { Some(api(var)?) } else { None };

        Ok(Config {
            mode,
            api,
            model: var("DEMO_MODEL").or_else(|| var("APF_MODEL")).unwrap_or(DEFAULT_MODEL.into()),
            max_tokens: number(var, "DEMO_MAX_TOKENS")?.unwrap_or(512),
            max_turns: number(var, "DEMO_MAX_TURNS")?,
            turn_delay: millis(var, "DEMO_TURN_DELAY_MS", 0)?,
            sleep: millis(var, "DEMO_SLEEP_MS", 5_000)?,
            task_path: var("DEMO_TASK").unwrap_or("/workspace/TASK.md".into()).into(),
            output: var("DEMO_OUTPUT_DIR").unwrap_or("/workspace/output".into()).into(),
            http_timeout: millis(var, "DEMO_HTTP_TIMEOUT_MS", 120_000)?,
            stdin_timeout: millis(var, "DEMO_STDIN_TIMEOUT_MS", 2_000)?,
            oom_max_mb: number(var, "DEMO_OOM_MAX_MB")?.unwrap_or(2048),
            alias: var("APF_ALIAS"),
            run: var("APF_RUN"),
        })
    }
}

fn api(var: &dyn Fn(&str) -> Option<String>) -> Result<Api, Failure> {
    let key = var("OPENROUTER_API_KEY")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| config_error("OPENROUTER_API_KEY is not set"))?;
    if key.chars().any(|c| c.is_control() || c == ' ') {
        return Err(config_error("OPENROUTER_API_KEY contains spaces or control characters"));
    }
    let base = var("OPENROUTER_BASE_URL")
        .ok_or_else(|| config_error("OPENROUTER_BASE_URL is not set (apf sets it)"))?;
    let url = BaseUrl::parse(&base).map_err(Failure::from_url)?;
    Ok(Api { key, url })
}

fn number<T: std::str::FromStr>(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<T>, Failure> {
    let Some(text) = var(name) else { return Ok(None) };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| config_error(format!("{name} `{text}` is not a non-negative whole number")))
}

fn millis(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<Duration, Failure> {
    Ok(Duration::from_millis(number(var, name)?.unwrap_or(default)))
}

fn config_error(message: impl Into<String>) -> Failure {
    Failure::new(code::CONFIG, "config", None, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(pairs: &[(&str, &str)]) -> Result<Config, Failure> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::resolve(&|name| map.get(name).filter(|v| !v.is_empty()).cloned())
    }

    const API: [(&str, &str); 2] =
        [("OPENROUTER_API_KEY", "sk-test"), ("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")];

    #[test]
    fn defaults() {
        let cfg = resolve(&API).unwrap();
        assert_eq!(cfg.mode, Mode::Work);
        assert_eq!(cfg.model, DEFAULT_MODEL);
        assert_eq!(cfg.max_tokens, 512);
        assert_eq!(cfg.max_turns, None);
        assert_eq!(cfg.task_path, PathBuf::from("/workspace/TASK.md"));
        assert_eq!(cfg.output, PathBuf::from("/workspace/output"));
        assert_eq!(cfg.api.unwrap().url.port, 9);
    }

    #[test]
    fn model_comes_from_demo_model_then_apf_model() {
        let mut env = API.to_vec();
        env.push(("APF_MODEL", "z-ai/glm-5"));
        assert_eq!(resolve(&env).unwrap().model, "z-ai/glm-5");
        env.push(("DEMO_MODEL", "meta-llama/llama-3.3-70b-instruct"));
        assert_eq!(resolve(&env).unwrap().model, "meta-llama/llama-3.3-70b-instruct");
    }

    #[test]
    fn modes_that_do_not_call_need_no_key() {
        for mode in ["idle", "crash", "oom"] {
            let cfg = resolve(&[("DEMO_MODE", mode)]).unwrap();
            assert!(cfg.api.is_none(), "{mode}");
        }
        let spin = resolve(&[("DEMO_MODE", "spin")]).unwrap_err();
        assert_eq!(spin.code, code::CONFIG);
    }

    #[test]
    fn bad_settings_are_config_errors() {
        for (name, value) in [
            ("DEMO_MODE", "dance"),
            ("DEMO_MAX_TOKENS", "lots"),
            ("DEMO_TURN_DELAY_MS", "-5"),
            ("OPENROUTER_API_KEY", "sk with space"),
        ] {
            let mut env = API.to_vec();
            env.retain(|(k, _)| *k != name);
            env.push((name, value));
            let failure = resolve(&env).unwrap_err();
            assert_eq!(failure.code, code::CONFIG, "{name}={value}");
            assert!(!failure.to_string().contains("sk with space"), "the key leaked");
        }
        let no_key = resolve(&[("OPENROUTER_BASE_URL", "http://127.0.0.1:9")]).unwrap_err();
        assert_eq!(no_key.code, code::CONFIG);
    }

    #[test]
    fn https_base_url_exits_4() {
        let failure = resolve(&[
            ("OPENROUTER_API_KEY", "sk-test"),
            ("OPENROUTER_BASE_URL", "https://127.0.0.1/api/v1"),
        ])
        .unwrap_err();
        assert_eq!(failure.code, code::HTTPS);
        assert!(failure.to_string().contains("plain HTTP only"));
    }

    #[test]
    fn api_debug_hides_the_key() {
        let cfg = resolve(&API).unwrap();
        assert!(!format!("{cfg:?}").contains("sk-test"));
    }
}
