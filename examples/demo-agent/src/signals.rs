//! Ending promptly on SIGTERM and SIGINT.
//!
//! In a container the agent is PID 1, and the kernel gives PID 1 no default action for SIGTERM:
//! without a handler `docker stop` would wait out its grace period and then SIGKILL. A watcher
//! thread receives the signals and exits with 128 + the signal number, as a shell would report.

use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::out::Out;

pub fn exit_on_termination(out: Out) {
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            out.log(&format!("could not install signal handlers: {e}"));
            return;
        }
    };
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = if signal == SIGTERM { "SIGTERM" } else { "SIGINT" };
            out.log(&format!("received {name}; exiting"));
            std::process::exit(128 + signal);
        }
    });
}
