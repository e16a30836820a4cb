//! The one place apf writes to the terminal. Data (tables, JSON, schemas) goes to stdout;
//! messages, progress and diagnostics go to stderr, at the level the user chose. Colour is
//! decided here once, from `--color`, `NO_COLOR` and `CLICOLOR_FORCE`, and every message reads
//! the same without it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub level: Level,
    pub color: bool,
}

static PRINTER: OnceLock<Printer> = OnceLock::new();

/// Live progress bars, while a run shows them: messages are then printed above the bars
/// instead of through them.
static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// Route messages above `bars` until [`clear_bars`].
pub fn set_bars(bars: indicatif::MultiProgress) {
    if let Ok(mut b) = BARS.lock() {
        *b = Some(bars);
    }
}

pub fn clear_bars() {
    if let Ok(mut b) = BARS.lock() {
        *b = None;
    }
}

fn emit(line: &str) {
    let bars = BARS.lock().ok().and_then(|b| b.clone());
    match bars {
        Some(mp) => {
            let _ = mp.println(line);
        }
        None => {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// Settle the output settings for the whole process. Later calls are ignored.
pub fn init(level: Level, choice: ColorChoice) {
    let color = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let forced = std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| v != "0");
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            forced || (!no_color && std::io::stderr().is_terminal())
        }
    };
    let _ = PRINTER.set(Printer { level, color });
}

pub fn get() -> Printer {
    *PRINTER.get().unwrap_or(&Printer { level: Level::Normal, color: false })
}

/// A message for the user, on stderr, unless `--quiet`.
pub fn info(msg: impl AsRef<str>) {
    if get().level >= Level::Normal {
        emit(msg.as_ref());
    }
}

/// A warning, on stderr, shown even under `--quiet`.
pub fn warn(msg: impl AsRef<str>) {
    let p = get();
    emit(&format!("{}: {}", paint(p, "warning", "33"), msg.as_ref()));
}

/// An error line, on stderr, always.
pub fn error(msg: impl AsRef<str>) {
    let p = get();
    emit(&format!("{}: {}", paint(p, "error", "31"), msg.as_ref()));
}

/// Data on stdout. A closed pipe (`apf status | head`) ends output quietly.
pub fn data(text: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", text.as_ref()).is_err() || out.flush().is_err() {
        std::process::exit(0);
    }
}

/// Wrap `text` in an ANSI colour when colour is on.
pub fn paint(p: Printer, text: &str, code: &str) -> String {
    if p.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

pub fn green(text: &str) -> String {
    paint(get(), text, "32")
}

pub fn yellow(text: &str) -> String {
    paint(get(), text, "33")
}

pub fn red(text: &str) -> String {
    paint(get(), text, "31")
}

pub fn bold(text: &str) -> String {
    paint(get(), text, "1")
}

/// Strip control characters from text that came from outside (a container, a server) before
/// it reaches a terminal, and mask any OpenRouter key in it.
pub fn sanitize(text: &str) -> String {
    let clean: String =
        text.chars().map(|c| if c.is_control() && c != '\t' { '·' } else { c }).collect();
    crate::secret::redact(&clean)
}

/// Whether stderr is a terminal that should get live progress.
pub fn is_interactive() -> bool {
    get().level >= Level::Normal
        && std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none()
}
