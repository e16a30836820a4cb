//! apf's demo agent: a small program that follows apf's agent contract, for the quickstart and
//! apf's own tests.
//!
//! It reads its key and base URL from the environment, its task from `/workspace/TASK.md` and
//! stdin, calls `{base}/chat/completions` in a tool-calling loop, writes under
//! `/workspace/output/`, and prints events (one-line JSON objects with a `type`) and log lines
//! on stdout. `DEMO_MODE` switches to behaviours that exercise apf's eject rules and exit causes.
//! See README.md for the settings, events and exit codes.

mod agent;
mod chat;
mod config;
mod decimal;
mod exit;
mod http;
mod modes;
mod out;
mod signals;
mod task;
mod tools;
mod url;
mod workspace;

use std::process::ExitCode;
use std::thread;

use config::{Config, Mode};
use exit::Failure;
use out::Out;

fn main() -> ExitCode {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let cfg = match Config::resolve(&var) {
        Ok(cfg) => cfg,
        Err(failure) => return fail(Out { quiet: false }, failure),
    };

    let out = Out { quiet: cfg.mode == Mode::SilentSpend };
    signals::exit_on_termination(out);
    match run(&cfg, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(out, failure),
    }
}

fn run(cfg: &Config, out: Out) -> Result<(), Failure> {
    match cfg.mode {
        Mode::Work => {
            announce(cfg, out);
            agent::work(cfg, out)
        }
        Mode::Spin => {
            announce(cfg, out);
            agent::spend(cfg, out, true)
        }
        Mode::SilentSpend => agent::spend(cfg, out, false),
        Mode::Idle => modes::idle(),
        Mode::Crash => {
            announce(cfg, out);
            Err(modes::crash(out))
        }
        Mode::Oom => {
            announce(cfg, out);
            modes::oom(cfg.oom_max_mb, out)
        }
        Mode::SleepThenWork => {
            // Silent while asleep, so apf's idle rules see a quiet agent that later recovers.
            thread::sleep(cfg.sleep);
            announce(cfg, out);
            out.log(&format!("slept {} ms; starting work", cfg.sleep.as_millis()));
            agent::work(cfg, out)
        }
    }
}

fn announce(cfg: &Config, out: Out) {
    let alias = cfg.alias.as_deref().map(|a| format!(", alias {a}")).unwrap_or_default();
    let run = cfg.run.as_deref().map(|r| format!(", run {r}")).unwrap_or_default();
    let version = env!("CARGO_PKG_VERSION");
    let (mode, model) = (cfg.mode.name(), &cfg.model);
    out.log(&format!("apf-demo-agent {version}: mode {mode}, model {model}{alias}{run}"));
}

fn fail(out: Out, failure: Failure) -> ExitCode {
    if let Some(event) = &failure.event {
        out.event(event);
    }
    ExitCode::from(failure.code)
}
