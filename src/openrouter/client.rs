//! The OpenRouter client apf uses: a thin reqwest layer over the paths it needs, with explicit
//! timeouts, retries that honour `Retry-After` and are logged with their cause, and errors
//! classified the way a budget harness must tell them apart (a key's cap is not the account's
//! credits; see HAZARDS H1 and H2).
//!
//! The same code talks to the real service and to `apf sim`; nothing here knows which.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire;
use crate::secret::Secret;

/// Keys are listed 100 to a page; a shorter page is the last.
pub const KEY_PAGE_SIZE: usize = 100;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    retries: u32,
}

/// What kind of failure an error is, for deciding what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// 403 "Key limit exceeded": this key's cap is spent. An expected end for an agent.
    KeyLimit,
    /// 402: the account (or key) cannot pay for the request.
    PaymentRequired,
    /// 401: missing, invalid, disabled or expired key.
    Unauthorized,
    /// 403 for any other reason, e.g. an inference key calling a management path.
    Forbidden,
    NotFound,
    BadRequest,
    RateLimited {
        retry_after: Option<Duration>,
    },
    Server,
    /// The request did not complete: refused connection, timeout, dropped stream.
    Transport,
    /// The response could not be read as the document describes.
    Decode,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} ({method} {url}): {detail}")]
pub struct ApiError {
    pub op: &'static str,
    pub method: Method,
    pub url: String,
    pub status: Option<StatusCode>,
    pub class: ErrorClass,
    pub detail: String,
}

impl ApiError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::RateLimited { .. } | ErrorClass::Server | ErrorClass::Transport
        )
    }
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("apf/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client { http, base_url: base_url.trim_end_matches('/').to_string(), retries: 4 }
    }

    /// The same client with a different number of retries for retryable failures.
    pub fn with_retries(mut self, retries: u32) -> Client {
        self.retries = retries;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub async fn credits(&self, key: &Secret) -> Result<wire::Credits, ApiError> {
        let d: wire::Data<wire::Credits> = self
            .call("read the account's credits", Method::GET, "/credits", key, None::<&()>)
            .await?;
        Ok(d.data)
    }

    pub async fn key_info(&self, key: &Secret) -> Result<wire::KeyInfo, ApiError> {
        let d: wire::Data<wire::KeyInfo> =
            self.call("read the key's own limits", Method::GET, "/key", key, None::<&()>).await?;
        Ok(d.data)
    }

    pub async fn models(&self, key: Option<&Secret>) -> Result<Vec<wire::Model>, ApiError> {
        let anonymous = Secret::new("");
        let d: wire::Data<Vec<wire::Model>> = self
            .call("list models", Method::GET, "/models", key.unwrap_or(&anonymous), None::<&()>)
            .await?;
        Ok(d.data)
    }

    /// Create a key. Not retried on server errors: a 5xx may still have created it, and the
    /// caller finds it by name instead of making a second one.
    pub async fn create_key(
        &self,
        management: &Secret,
        body: &wire::CreateKey,
    ) -> Result<(wire::Key, Secret), ApiError> {
        // A 429 was refused before anything was made, so it alone is safe to retry.
        let mut attempt = 0;
        loop {
            match self
                .call_once::<wire::CreatedKey, _>(
                    "create a key",
                    Method::POST,
                    "/keys",
                    management,
                    Some(body),
                )
                .await
            {
                Ok(created) => return Ok((created.data, Secret::new(created.key))),
                Err(e)
                    if matches!(e.class, ErrorClass::RateLimited { .. })
                        && attempt < self.retries =>
                {
                    attempt += 1;
                    let wait = backoff(attempt, &e.class);
                    tracing::warn!(
                        "create a key: {} (attempt {attempt}), retrying in {wait:?}",
                        e.detail
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every key of the account, across all pages.
    pub async fn list_keys(
        &self,
        management: &Secret,
        include_disabled: bool,
    ) -> Result<Vec<wire::Key>, ApiError> {
        let mut all = Vec::new();
        loop {
            let path = format!("/keys?offset={}&include_disabled={include_disabled}", all.len());
            let page: wire::Data<Vec<wire::Key>> =
                self.call("list keys", Method::GET, &path, management, None::<&()>).await?;
            let n = page.data.len();
            all.extend(page.data);
            if n < KEY_PAGE_SIZE {
                return Ok(all);
            }
        }
    }

    pub async fn update_key(
        &self,
        management: &Secret,
        hash: &str,
        body: &wire::UpdateKey,
    ) -> Result<wire::Key, ApiError> {
        let path = format!("/keys/{hash}");
        let d: wire::Data<wire::Key> =
            self.call("update a key", Method::PATCH, &path, management, Some(body)).await?;
        Ok(d.data)
    }

    /// Delete a key. A key that is already gone counts as deleted.
    pub async fn delete_key(&self, management: &Secret, hash: &str) -> Result<(), ApiError> {
        let path = format!("/keys/{hash}");
        match self
            .call::<wire::Deleted, ()>("delete a key", Method::DELETE, &path, management, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.class == ErrorClass::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One chat completion, not streamed. Never retried: a retried completion may be billed
    /// twice.
    pub async fn chat(
        &self,
        key: &Secret,
        body: &wire::ChatRequest,
    ) -> Result<wire::ChatResponse, ApiError> {
        self.call_once("complete a chat", Method::POST, "/chat/completions", key, Some(body)).await
    }

    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        key: &Secret,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            match self.call_once(op, method.clone(), path, key, body).await {
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    attempt += 1;
                    let wait = backoff(attempt, &e.class);
                    tracing::warn!(
                        "{op}: {} (attempt {attempt} of {}), retrying in {wait:?}",
                        e.detail,
                        self.retries + 1
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once<T: DeserializeOwned, B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        key: &Secret,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base_url);
        let err = |status, class, detail: String| ApiError {
            op,
            method: method.clone(),
            url: url.clone(),
            status,
            class,
            detail: crate::secret::redact(&detail),
        };
        let mut req = self.http.request(method.clone(), &url);
        if !key.expose().is_empty() {
            req = req.bearer_auth(key.expose());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        tracing::debug!("{method} {url}");
        let resp =
            req.send().await.map_err(|e| err(None, ErrorClass::Transport, transport_detail(&e)))?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = resp
            .text()
            .await
            .map_err(|e| err(Some(status), ErrorClass::Transport, transport_detail(&e)))?;
        if !status.is_success() {
            let message = error_message(&text);
            let class = classify(status, &message, retry_after);
            return Err(err(Some(status), class, format!("{status}: {message}")));
        }
        serde_json::from_str(&text).map_err(|e| {
            let head: String = text.chars().take(200).collect();
            err(Some(status), ErrorClass::Decode, format!("unreadable response ({e}): {head}"))
        })
    }
}

fn transport_detail(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// The message of OpenRouter's error envelope, or the body itself when it is not one.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<wire::ErrorBody>(body) {
        Ok(b) if !b.error.message.is_empty() => b.error.message,
        _ => body.chars().take(300).collect::<String>().trim().to_string(),
    }
}

pub fn classify(status: StatusCode, message: &str, retry_after: Option<Duration>) -> ErrorClass {
    match status.as_u16() {
        401 => ErrorClass::Unauthorized,
        402 => ErrorClass::PaymentRequired,
        403 if message.trim_start().starts_with("Key limit exceeded") => ErrorClass::KeyLimit,
        403 => ErrorClass::Forbidden,
        404 => ErrorClass::NotFound,
        408 => ErrorClass::Transport,
        429 => ErrorClass::RateLimited { retry_after },
        400 | 413 | 422 => ErrorClass::BadRequest,
        s if s >= 500 => ErrorClass::Server,
        _ => ErrorClass::BadRequest,
    }
}

/// Exponential backoff from 250 ms, capped at 10 s; a server's `Retry-After` wins, capped at
/// 60 s so one answer cannot stall a run.
fn backoff(attempt: u32, class: &ErrorClass) -> Duration {
    if let ErrorClass::RateLimited { retry_after: Some(d) } = class {
        return (*d).min(Duration::from_secs(60));
    }
    let ms = 250u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(ms.min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_cap_and_an_empty_account_are_different_errors() {
        let cap =
            "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys";
        assert_eq!(classify(StatusCode::FORBIDDEN, cap, None), ErrorClass::KeyLimit);
        assert_eq!(
            classify(StatusCode::PAYMENT_REQUIRED, "Insufficient credits", None),
            ErrorClass::PaymentRequired
        );
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                "Only management keys can perform this operation",
                None
            ),
            ErrorClass::Forbidden
        );
    }

    #[test]
    fn error_messages_come_from_the_envelope() {
        let body = r#"{"error":{"code":402,"message":"Insufficient credits"}}"#;
        assert_eq!(error_message(body), "Insufficient credits");
        assert_eq!(error_message("<html>bad gateway</html>"), "<html>bad gateway</html>");
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let class = ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(backoff(1, &class), Duration::from_secs(2));
        let long = ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(600)) };
        assert_eq!(backoff(1, &long), Duration::from_secs(60));
        assert_eq!(backoff(1, &ErrorClass::Server), Duration::from_millis(500));
    }
}
