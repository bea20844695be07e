//! Task calls (`/v3/tasks`): create one or several (with an idempotency key the client adds, so a retried create
//! never makes two tasks), read, cancel, list page by page or as a stream, and wait for the end.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use reqwest::Method;

use super::{Client, ClientError};
use crate::api::analytics::{Analytics, Bucket};
use crate::api::tasks::{Capabilities, CreateTask, Status, Task, TaskMetrics, TaskPage};
use crate::backoff::full_jitter;

/// The window of [`Client::analytics`].
#[derive(Debug, Clone, Default)]
pub struct AnalyticsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub bucket: Bucket,
    /// Only this task type's series.
    pub kind: Option<String>,
}

/// How many creates of [`Client::create_tasks`] are in flight at once.
pub const BATCH_CONCURRENCY: usize = 10;

/// Which tasks a listing returns.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<Status>,
    /// A task type.
    pub kind: Option<String>,
    /// Tasks per page (1–100; the server's default is 20).
    pub page_size: Option<u32>,
}

/// The pages of a listing, fetched one at a time as they are asked for.
#[derive(Debug)]
pub struct TaskPages {
    client: Client,
    filter: TaskFilter,
    cursor: Option<String>,
    done: bool,
}

impl TaskPages {
    /// The next page; `None` after the last.
    pub async fn next_page(&mut self) -> Option<Result<Vec<Task>, ClientError>> {
        if self.done {
            return None;
        }
        let mut query = Vec::new();
        if let Some(status) = self.filter.status {
            query.push(("status", status.as_str().to_owned()));
        }
        if let Some(kind) = &self.filter.kind {
            query.push(("type", kind.clone()));
        }
        if let Some(size) = self.filter.page_size {
            query.push(("limit", size.to_string()));
        }
        if let Some(cursor) = &self.cursor {
            query.push(("cursor", cursor.clone()));
        }
        match self.client.get::<TaskPage>("/v3/tasks", query).await {
            Ok(page) => {
                self.cursor = page.next_cursor;
                self.done = self.cursor.is_none();
                Some(Ok(page.tasks))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// The remaining tasks one at a time, each page fetched when the one before is used up: a listing of any
    /// length in the memory of one page. The stream ends after an error (the cursor cannot be trusted past it).
    pub fn into_stream(self) -> impl Stream<Item = Result<Task, ClientError>> + Send + Unpin {
        Box::pin(futures_util::stream::unfold((self, VecDeque::new()), |(mut pages, mut held)| async move {
            loop {
                if let Some(task) = held.pop_front() {
                    return Some((Ok(task), (pages, held)));
                }
                match pages.next_page().await? {
                    Ok(page) => held.extend(page),
                    Err(e) => return Some((Err(e), (pages, held))),
                }
            }
        }))
    }

    /// Every remaining task, page after page.
    pub async fn collect(mut self) -> Result<Vec<Task>, ClientError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await {
            all.extend(page?);
        }
        Ok(all)
    }
}

impl Client {
    /// Creates a task: it runs in the request (the answer carries its result) or is queued (`options.asynchronous`,
    /// or a long type). Without an idempotency key the client adds one, so the retries it makes cannot create a
    /// second task. A task that ran and failed is answered as its problem (`ClientError::Server` for a failure
    /// after its attempts, `Validation` for an input the handler refused).
    pub async fn create_task(&self, mut task: CreateTask) -> Result<Task, ClientError> {
        if task.options.idempotency_key.is_none() {
            task.options.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
        }
        let (_, created) = self.write(Method::POST, "/v3/tasks", Some(&task), true).await?;
        Ok(created)
    }

    /// Creates several tasks, up to [`BATCH_CONCURRENCY`] at a time, each with its own idempotency key and
    /// retries: one outcome per task, in the order given, so a refused task does not hide its neighbours'.
    /// (The v2 `/api/batch` route is deprecated; this is the same through `POST /v3/tasks`.)
    pub async fn create_tasks(&self, tasks: Vec<CreateTask>) -> Vec<Result<Task, ClientError>> {
        futures_util::stream::iter(tasks).map(|task| self.create_task(task)).buffered(BATCH_CONCURRENCY).collect().await
    }

    /// One task of the caller's tenant.
    pub async fn task(&self, id: &str) -> Result<Task, ClientError> {
        self.get(&format!("/v3/tasks/{}", segment(id)?), Vec::new()).await
    }

    /// Cancels a queued or running task (`Conflict` when it already finished). Not retried on a lost answer:
    /// read the task to learn whether it was cancelled.
    pub async fn cancel_task(&self, id: &str) -> Result<Task, ClientError> {
        let path = format!("/v3/tasks/{}", segment(id)?);
        let (_, task) = self.write::<(), Task>(Method::DELETE, &path, None, false).await?;
        Ok(task)
    }

    /// The caller's tasks, newest first, page by page.
    pub fn tasks(&self, filter: TaskFilter) -> TaskPages {
        TaskPages { client: self.clone(), filter, cursor: None, done: false }
    }

    /// What the deployment runs: every task type with its input schema and limits. Cached for 5 minutes per
    /// client (the list changes only with a deployment).
    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        const FRESH: Duration = Duration::from_mins(5);
        if let Some((at, cached)) =
            self.inner.capabilities.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && at.elapsed() < FRESH
        {
            return Ok(cached.clone());
        }
        let fresh: Capabilities = self.get("/api/capabilities", Vec::new()).await?;
        *self.inner.capabilities.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((tokio::time::Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// The tenant's windowed analytics (needs `metrics:read`): per bucket and task type, outcomes and duration
    /// percentiles; per route, requests; anomalies; the window's cost per platform. `from`/`to`: RFC 3339 times
    /// (the server's defaults, the last 24 buckets, when `None`).
    pub async fn analytics(&self, query: &AnalyticsQuery) -> Result<Analytics, ClientError> {
        let mut params = vec![("bucket", query.bucket.as_str().to_owned())];
        for (name, value) in [("from", &query.from), ("to", &query.to), ("type", &query.kind)] {
            if let Some(value) = value {
                params.push((name, value.clone()));
            }
        }
        self.get("/api/v1/analytics", params).await
    }

    /// The tenant's task statistics (needs `metrics:read`), aggregated across every instance.
    pub async fn task_metrics(&self) -> Result<TaskMetrics, ClientError> {
        self.get("/api/metrics", Vec::new()).await
    }

    /// Polls a task until it is final, with backoff from 100 ms up to 2 s between reads; `Timeout` after
    /// `deadline`.
    pub async fn wait_for_task(&self, id: &str, deadline: Duration) -> Result<Task, ClientError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut round = 0;
        loop {
            let task = self.task(id).await?;
            if task.is_final() {
                return Ok(task);
            }
            let pause =
                full_jitter(Duration::from_millis(100), Duration::from_secs(2), round).max(Duration::from_millis(20));
            if tokio::time::Instant::now() + pause > until {
                return Err(ClientError::Timeout(deadline));
            }
            tokio::time::sleep(pause).await;
            round += 1;
        }
    }
}

/// A task id as one path segment: ids are `t_` and hex digits, so anything else is refused before it is sent.
fn segment(id: &str) -> Result<&str, ClientError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(ClientError::Protocol(format!("{id:?} is not a task id")))
    }
}
