//! `TokenManager`: holds an agent's token pair and keeps it fresh.
//!
//! - `token().await` returns an access token valid for at least the refresh margin.
//! - A background task refreshes proactively, `margin` before expiry (5 min by default, scaled down to a third of
//!   the lifetime for short-lived tokens).
//! - Single flight: however many callers need a refresh at once, one refresh request is made.
//! - A failed refresh is retried with full-jitter backoff while the old token is still valid. If the server says
//!   the refresh token was reused, revoked or is unknown, the manager logs in again with the agent credential
//!   once, then gives up with a typed error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::backoff::full_jitter;
use crate::secret::AgentSecret;

/// Errors the SDK surfaces to agent code.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The agent credential was refused: fix the configuration, retrying will not help.
    #[error("agent credentials rejected: {0}")]
    Unauthorized(String),
    /// The refresh family was revoked or reused and logging in again failed too.
    #[error("session lost and re-authentication failed: {0}")]
    SessionLost(String),
    /// The server or network failed and the current token expired before a retry succeeded.
    #[error("token service unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// Tuning; the defaults suit production lifetimes.
#[derive(Debug, Clone)]
pub struct TokenManagerOptions {
    /// Refresh this long before expiry (scaled down to a third of the token lifetime when that is shorter).
    pub refresh_margin: Duration,
    /// Attempts per refresh before giving up (while the old token still works, failures are retried).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl Default for TokenManagerOptions {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_mins(5),
            max_attempts: 6,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The token response fields the SDK uses.
#[derive(Clone, Deserialize)]
struct Issued {
    access_token: String,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
}

#[derive(Clone)]
struct Pair {
    access: String,
    /// Measured from *before* the request was sent, so local expiry is never later than the server's.
    access_expires: Instant,
    refresh: String,
    refresh_expires: Instant,
    lifetime: Duration,
}

// Tokens never print: `Debug` of everything that holds them shows `[redacted]`.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("access", &"[redacted]")
            .field("refresh", &"[redacted]")
            .field("access_expires", &self.access_expires)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    agent_id: String,
    secret: AgentSecret,
    options: TokenManagerOptions,
    pair: RwLock<Pair>,
    /// Held while a refresh is in flight: the single-flight gate.
    refreshing: Mutex<()>,
    refreshes: AtomicU64,
    logins: AtomicU64,
}

/// Cheap to clone; clones share one pair and one background refresher.
#[derive(Debug, Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

/// What a failed call told us.
enum Failure {
    /// Retrying the same request may work (network, 5xx, 429).
    Transient(String),
    /// The refresh token is dead (reused, revoked, unknown): log in again.
    SessionGone(String),
    /// Credentials refused.
    Rejected(String),
    Protocol(String),
}

impl TokenManager {
    /// Logs in with the agent credential and starts the background refresher.
    pub async fn login(
        base_url: &str,
        agent_id: &str,
        agent_secret: AgentSecret,
        options: TokenManagerOptions,
    ) -> Result<Self, SdkError> {
        let http = client(&options)?;
        let base = base_url.trim_end_matches('/').to_owned();
        let pair = login_request(&http, &base, agent_id, &agent_secret).await.map_err(login_error)?;
        Ok(Self::start(http, base, agent_id, agent_secret, options, pair, 1))
    }

    /// Continues a saved session: rotates `refresh_token` (logging in again if it is no longer valid).
    pub async fn resume(
        base_url: &str,
        agent_id: &str,
        agent_secret: AgentSecret,
        refresh_token: &str,
        options: TokenManagerOptions,
    ) -> Result<Self, SdkError> {
        let http = client(&options)?;
        let base = base_url.trim_end_matches('/').to_owned();
        let (pair, logins, refreshes) = match refresh_request(&http, &base, refresh_token).await {
            Ok(pair) => (pair, 0, 1),
            Err(Failure::SessionGone(_)) => {
                (login_request(&http, &base, agent_id, &agent_secret).await.map_err(login_error)?, 1, 0)
            }
            Err(other) => return Err(login_error(other)),
        };
        let manager = Self::start(http, base, agent_id, agent_secret, options, pair, logins);
        manager.inner.refreshes.store(refreshes, Ordering::SeqCst);
        Ok(manager)
    }

    fn start(
        http: reqwest::Client,
        base: String,
        agent_id: &str,
        agent_secret: AgentSecret,
        options: TokenManagerOptions,
        pair: Pair,
        logins: u64,
    ) -> Self {
        let inner = Arc::new(Inner {
            http,
            base,
            agent_id: agent_id.to_owned(),
            secret: agent_secret,
            options,
            pair: RwLock::new(pair),
            refreshing: Mutex::new(()),
            refreshes: AtomicU64::new(0),
            logins: AtomicU64::new(logins),
        });
        tokio::spawn(background(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// An access token valid for at least the refresh margin; refreshes first when needed (single flight).
    pub async fn token(&self) -> Result<String, SdkError> {
        {
            let pair = self.inner.pair.read().await;
            if remaining(&pair) >= margin(&self.inner.options, &pair) {
                return Ok(pair.access.clone());
            }
        }
        self.inner.refresh_if_due().await?;
        Ok(self.inner.pair.read().await.access.clone())
    }

    /// The current refresh token (for an agent that persists its session across restarts).
    pub async fn refresh_token(&self) -> String {
        self.inner.pair.read().await.refresh.clone()
    }

    /// Successful refresh requests so far.
    pub fn refresh_count(&self) -> u64 {
        self.inner.refreshes.load(Ordering::SeqCst)
    }

    /// Logins with the agent credential so far (1 + re-authentications).
    pub fn login_count(&self) -> u64 {
        self.inner.logins.load(Ordering::SeqCst)
    }

    pub fn agent_id(&self) -> &str {
        &self.inner.agent_id
    }
}

fn client(options: &TokenManagerOptions) -> Result<reqwest::Client, SdkError> {
    reqwest::Client::builder().timeout(options.request_timeout).build().map_err(|e| SdkError::Protocol(e.to_string()))
}

fn login_error(failure: Failure) -> SdkError {
    match failure {
        Failure::Rejected(m) | Failure::SessionGone(m) => SdkError::Unauthorized(m),
        Failure::Transient(m) => SdkError::Unavailable(m),
        Failure::Protocol(m) => SdkError::Protocol(m),
    }
}

fn remaining(pair: &Pair) -> Duration {
    pair.access_expires.saturating_duration_since(Instant::now())
}

fn margin(options: &TokenManagerOptions, pair: &Pair) -> Duration {
    options.refresh_margin.min(pair.lifetime / 3)
}

impl Inner {
    /// Refreshes unless someone else just did (callers queue on the gate and re-check).
    async fn refresh_if_due(&self) -> Result<(), SdkError> {
        let _gate = self.refreshing.lock().await;
        let (refresh, old_expires, family_over) = {
            let pair = self.pair.read().await;
            if remaining(&pair) >= margin(&self.options, &pair) {
                return Ok(());
            }
            (pair.refresh.clone(), pair.access_expires, pair.refresh_expires <= Instant::now())
        };
        if family_over {
            // The refresh family reached its absolute lifetime: only the credential can start a new one.
            let pair =
                login_request(&self.http, &self.base, &self.agent_id, &self.secret).await.map_err(login_error)?;
            *self.pair.write().await = pair;
            self.logins.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match refresh_request(&self.http, &self.base, &refresh).await {
                Ok(pair) => {
                    *self.pair.write().await = pair;
                    self.refreshes.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                Err(Failure::SessionGone(why)) => {
                    tracing::warn!(agent = %self.agent_id, %why, "refresh token no longer valid; logging in again");
                    return match login_request(&self.http, &self.base, &self.agent_id, &self.secret).await {
                        Ok(pair) => {
                            *self.pair.write().await = pair;
                            self.logins.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        }
                        Err(
                            Failure::Transient(m)
                            | Failure::Rejected(m)
                            | Failure::SessionGone(m)
                            | Failure::Protocol(m),
                        ) => Err(SdkError::SessionLost(format!("{why}; login: {m}"))),
                    };
                }
                Err(Failure::Rejected(m)) => return Err(SdkError::Unauthorized(m)),
                Err(Failure::Protocol(m)) => return Err(SdkError::Protocol(m)),
                Err(Failure::Transient(m)) => {
                    attempt += 1;
                    let pause = full_jitter(self.options.backoff_base, self.options.backoff_cap, attempt);
                    // Keep trying only while the token we hold still works and attempts remain.
                    if attempt >= self.options.max_attempts || Instant::now() + pause >= old_expires {
                        return Err(SdkError::Unavailable(m));
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// Refreshes `margin` before expiry until the manager is dropped.
async fn background(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let wake = {
            let pair = strong.pair.read().await;
            pair.access_expires.checked_sub(margin(&strong.options, &pair)).unwrap_or_else(Instant::now)
        };
        drop(strong);
        tokio::time::sleep_until(wake).await;
        let Some(strong) = inner.upgrade() else { return };
        if let Err(e) = strong.refresh_if_due().await {
            tracing::warn!(error = %e, "background token refresh failed; will retry");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn login_request(http: &reqwest::Client, base: &str, id: &str, secret: &AgentSecret) -> Result<Pair, Failure> {
    let body = serde_json::json!({ "agent_id": id, "agent_secret": secret.expose() });
    send(http.post(format!("{base}/api/v1/agent/token")).json(&body)).await
}

async fn refresh_request(http: &reqwest::Client, base: &str, refresh: &str) -> Result<Pair, Failure> {
    let body = serde_json::json!({ "refresh_token": refresh });
    send(http.post(format!("{base}/api/v1/agent/token/refresh")).json(&body)).await
}

async fn send(request: reqwest::RequestBuilder) -> Result<Pair, Failure> {
    let sent_at = Instant::now();
    let response = request.send().await.map_err(|e| Failure::Transient(e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        let issued: Issued = response.json().await.map_err(|e| Failure::Protocol(e.to_string()))?;
        // `expires_in` counts from the server's whole second; one second less keeps us on the safe side.
        let lifetime = Duration::from_secs(issued.expires_in.saturating_sub(1));
        return Ok(Pair {
            access: issued.access_token,
            access_expires: sent_at + lifetime,
            refresh: issued.refresh_token,
            refresh_expires: sent_at + Duration::from_secs(issued.refresh_expires_in),
            lifetime,
        });
    }
    let problem: serde_json::Value = response.json().await.unwrap_or_default();
    let kind = problem["type"].as_str().unwrap_or_default().to_owned();
    let detail = format!("{status}: {}", problem["detail"].as_str().unwrap_or(kind.as_str()));
    Err(match status.as_u16() {
        401 if kind.ends_with(":invalid-client") => Failure::Rejected(detail),
        401 => Failure::SessionGone(detail),
        408 | 429 | 500..=599 => Failure::Transient(detail),
        _ => Failure::Protocol(detail),
    })
}
