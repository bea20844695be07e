//! `ProgressReporter`: `report(update)` returns at once; updates go out in batches (10 items or 5 s, whichever
//! first) through the request batcher; a batch is retried with full-jitter backoff under the SAME batch id, so a
//! retry after a lost response replays the stored receipt instead of writing twice; `shutdown().await` flushes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::TokenManager;
use crate::backoff::full_jitter;
use crate::batch::{BatchConfig, BatchError, Batcher};
use crate::wire::{ProgressUpdate, Receipt};

/// Tuning; defaults: 10 items / 5 s per batch, 8 attempts per batch.
#[derive(Debug, Clone, Copy)]
pub struct ReporterOptions {
    pub batch: BatchConfig,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for ReporterOptions {
    fn default() -> Self {
        Self {
            batch: BatchConfig::default(),
            max_attempts: 8,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
        }
    }
}

/// Counters, for agents that export their own metrics.
#[derive(Debug, Default)]
pub struct ReporterStats {
    pub batches: AtomicU64,
    pub attempts: AtomicU64,
    pub replays: AtomicU64,
}

/// Batches and posts progress updates for one agent.
#[derive(Debug, Clone)]
pub struct ProgressReporter {
    batcher: Batcher<(), ProgressUpdate, ()>,
    stats: Arc<ReporterStats>,
}

/// The outcome of one reported update: `Ok` once it is durably stored.
pub type ReportOutcome = oneshot::Receiver<Result<(), BatchError>>;

impl ProgressReporter {
    pub fn new(base_url: &str, tokens: TokenManager, options: ReporterOptions) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap_or_default();
        let url = format!("{}/api/v1/agent/progress", base_url.trim_end_matches('/'));
        let stats = Arc::new(ReporterStats::default());
        let s = stats.clone();
        let batcher = Batcher::new(options.batch, move |(), updates: Vec<ProgressUpdate>| {
            let (http, url, tokens, stats) = (http.clone(), url.clone(), tokens.clone(), s.clone());
            async move { post(&http, &url, &tokens, updates, options, &stats).await }
        });
        Self { batcher, stats }
    }

    /// Queues an update and returns at once (it waits only if 10 000 updates are already pending).
    pub async fn report(&self, update: ProgressUpdate) -> Result<ReportOutcome, BatchError> {
        self.batcher.enqueue((), update).await
    }

    /// Sends everything queued now and waits for the answers.
    pub async fn flush(&self) {
        self.batcher.flush().await;
    }

    /// Flushes and stops.
    pub async fn shutdown(self) {
        self.batcher.shutdown().await;
    }

    /// The counters, shared: they stay readable after `shutdown` (which posts the last batches).
    pub fn stats(&self) -> Arc<ReporterStats> {
        self.stats.clone()
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    tokens: &TokenManager,
    updates: Vec<ProgressUpdate>,
    options: ReporterOptions,
    stats: &ReporterStats,
) -> Vec<Result<(), BatchError>> {
    let count = updates.len();
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({ "batch_id": batch_id, "updates": updates });
    stats.batches.fetch_add(1, Ordering::Relaxed);
    let mut last_error = String::new();
    for attempt in 0..options.max_attempts {
        if attempt > 0 {
            tokio::time::sleep(full_jitter(options.backoff_base, options.backoff_cap, attempt)).await;
        }
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let token = match tokens.token().await {
            Ok(t) => t,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let response = match http.post(url).bearer_auth(token).json(&body).send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        let status = response.status();
        if status.as_u16() == 202 {
            if response.headers().contains_key("idempotency-replayed") {
                stats.replays.fetch_add(1, Ordering::Relaxed);
            }
            let receipt: Receipt = match response.json().await {
                Ok(r) => r,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            if !receipt.failed.is_empty() {
                // Not everything is durable: resend the whole batch under the same id (no duplicates possible).
                last_error = format!("{} updates not stored yet", receipt.failed.len());
                continue;
            }
            let mut outcomes: Vec<Result<(), BatchError>> = vec![Ok(()); count];
            for issue in receipt.rejected {
                if let Some(slot) = outcomes.get_mut(issue.index) {
                    *slot = Err(BatchError::Rejected(issue.reason));
                }
            }
            return outcomes;
        }
        let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 409 | 429);
        last_error = format!("{status}: {}", response.text().await.unwrap_or_default());
        if !retryable {
            return (0..count).map(|_| Err(BatchError::Rejected(last_error.clone()))).collect();
        }
    }
    (0..count).map(|_| Err(BatchError::Failed(last_error.clone()))).collect()
}
