//! How the agent ends when it does not finish its task: an exit code apf can classify, and the
//! `error` event printed just before it.
//!
//! The codes are part of the agent contract that apf's tests rely on, so they live in one table
//! here and in the README.

use std::fmt;

use serde_json::{Value, json};

use crate::url::UrlError;

/// Exit codes. 0 is `done`; signals end the process with 128 + the signal number.
pub mod code {
    /// `DEMO_MODE=crash`.
    pub const CRASH: u8 = 1;
    /// A missing or malformed setting.
    pub const CONFIG: u8 = 2;
    /// The key's cap is spent (403 "Key limit exceeded") or the account cannot pay (402).
    pub const REFUSED: u8 = 3;
    /// `OPENROUTER_BASE_URL` is `https://`: the demo agent speaks plain HTTP only.
    pub const HTTPS: u8 = 4;
    /// The server stayed unreachable, rate-limited or failing through every retry.
    pub const UNAVAILABLE: u8 = 5;
    /// 401: the key is wrong, revoked or expired.
    pub const UNAUTHORIZED: u8 = 6;
    /// Another refusal (400, 404, a 403 that is not the key cap) or an unreadable answer.
    pub const REJECTED: u8 = 7;
    /// The output folder could not be written.
    pub const OUTPUT: u8 = 8;
}

/// An ending other than `done`.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    /// The `error` event to print, or none (a crash prints only a log line).
    pub event: Option<Value>,
}

impl Failure {
    pub fn new(code: u8, kind: &str, status: Option<u16>, message: String) -> Failure {
        let mut event = json!({"type": "error", "kind": kind, "message": message});
        if let Some(status) = status {
            event["status"] = json!(status);
        }
        Failure { code, event: Some(event) }
    }

    pub fn silent(code: u8) -> Failure {
        Failure { code, event: None }
    }

    pub fn from_url(err: UrlError) -> Failure {
        let kind = match err {
            UrlError::Https => "unsupported_scheme",
            UrlError::Invalid(_) => "config",
        };
        let code = if err == UrlError::Https { code::HTTPS } else { code::CONFIG };
        Failure::new(code, kind, None, err.to_string())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.event.as_ref().and_then(|e| e["message"].as_str()).unwrap_or("");
        write!(f, "exit {}: {message}", self.code)
    }
}
