//! The request log: one entry per API request (the `/_sim/` control routes excepted) with its
//! method, path, route, the hash of the key that made it (never the key), status and cost. Kept
//! in memory for tests and, with `--log FILE`, appended to a file as JSON lines.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::money::Usd;

use super::lock;

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// When the response was sent, RFC 3339 UTC.
    pub at: String,
    pub method: String,
    /// The path below the base URL, without the query: `/keys/3f9a…`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The route the path matched: `/keys/{hash}`.
    pub route: String,
    /// The sha256 hash of the bearer key, when it is a key of the account.
    pub key_hash: Option<String>,
    pub status: u16,
    /// What the request cost, for billed completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Usd>,
    /// The injected fault, if one hit: `429`, `502`, `drop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl LoggedRequest {
    /// `"GET /keys"`: the key under which [`RequestLog::counts`] counts this request.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.route)
    }
}

/// The log itself.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
    file: Option<Mutex<File>>,
}

impl RequestLog {
    pub fn new(path: Option<&Path>) -> anyhow::Result<RequestLog> {
        let file = match path {
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening request log {}", path.display()))?,
            )),
            None => None,
        };
        Ok(RequestLog { entries: Mutex::new(Vec::new()), file })
    }

    pub fn push(&self, entry: LoggedRequest) {
        if let Some(file) = &self.file
            && let Ok(mut line) = serde_json::to_string(&entry)
        {
            line.push('\n');
            // A full disk must not take the simulator down; the in-memory log still has it.
            let _ = lock(file).write_all(line.as_bytes());
        }
        lock(&self.entries).push(entry);
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).clone()
    }

    /// Requests counted per `"METHOD /route"`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in lock(&self.entries).iter() {
            *counts.entry(e.label()).or_insert(0) += 1;
        }
        counts
    }

    /// Requests with `method` whose route or path is `route`.
    pub fn count(&self, method: &str, route: &str) -> usize {
        lock(&self.entries)
            .iter()
            .filter(|e| {
                e.method.eq_ignore_ascii_case(method) && (e.route == route || e.path == route)
            })
            .count()
    }
}
