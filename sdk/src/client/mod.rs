//! The operator client: typed calls to an API deployment with an API key, an identity provider's bearer token, or
//! an agent's [`TokenManager`]; every call retried by the rules of [`crate::retry`] under one budget per client,
//! behind a circuit breaker (the server's own, `cloud_agent_breaker`: a deployment that keeps failing is not
//! called again until its open time passes, then trial calls decide), signed per attempt when the key requires
//! it (a signature is single-use on the server), and answered as a wire type or a [`ClientError`]. Request
//! bodies over [`GZIP_ABOVE`] bytes go gzip-encoded, and the client accepts compressed answers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloud_agent_sdk::client::ClientError> {
//! use cloud_agent_sdk::client::Client;
//! use cloud_agent_sdk::api::tasks::CreateTask;
//! let client = Client::builder("https://agents.example.com").api_key("ca_live_…").build()?;
//! let task = client.create_task(CreateTask {
//!     kind: "echo".into(),
//!     payload: serde_json::json!({"message": "hi"}),
//!     options: Default::default(),
//! }).await?;
//! println!("{} is {:?}", task.id, task.status);
//! # Ok(()) }
//! ```

mod admin;
mod balance;
mod error;
mod tasks;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use balance::{Balancer, Endpoint};
use cloud_agent_breaker::{Breaker, BreakerConfig, Snapshot};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use admin::AuditFilter;
pub use balance::{Balance, EndpointConfig, EndpointSnapshot, FAILOVER_AFTER, Health, RECOVER_AFTER};
pub use error::ClientError;
pub use tasks::{AnalyticsQuery, BATCH_CONCURRENCY, TaskFilter, TaskPages};

use crate::retry::{Attempt, RetryBudget, RetryPolicy, Retrying, Verdict, parse_retry_after};
use crate::{RequestSigner, TokenManager};

/// Who the client calls as.
#[derive(Clone)]
pub enum Credential {
    /// An operator's API key, sent as `X-API-Key`.
    ApiKey(String),
    /// A bearer token: an identity provider's, or the bootstrap admin key.
    Bearer(String),
    /// An agent, through its token manager (fresh access tokens).
    Agent(Arc<TokenManager>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ApiKey(_) => "ApiKey(…)",
            Self::Bearer(_) => "Bearer(…)",
            Self::Agent(_) => "Agent(…)",
        })
    }
}

/// Builds a [`Client`]; every policy has a default.
#[derive(Debug)]
pub struct ClientBuilder {
    endpoints: Vec<EndpointConfig>,
    balance: Balance,
    credential: Option<Credential>,
    signer: Option<RequestSigner>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    budget: Option<Arc<RetryBudget>>,
    breaker: BreakerConfig,
    probe_every: Option<Duration>,
}

impl ClientBuilder {
    /// Probes every endpoint's `/health/ready` this often (from a task on the current tokio runtime, for as long
    /// as the client lives), so an endpoint that went down is known before a call meets it and one that came back
    /// gets calls again. Off by default: a short-lived client learns from its calls.
    #[must_use]
    pub fn health_checks(mut self, every: Duration) -> Self {
        self.probe_every = Some(every);
        self
    }

    /// Another endpoint of the same deployment (a second region, or the Vercel and the Lambda deployment of one
    /// table): calls are spread by [`Self::balance`] and fail over between them.
    #[must_use]
    pub fn endpoint(mut self, endpoint: EndpointConfig) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// How calls are spread over the endpoints (default: round-robin).
    #[must_use]
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// Calls with an API key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.credential = Some(Credential::ApiKey(key.into()));
        self
    }

    /// Calls with a bearer token (an identity provider's token, or the bootstrap admin key).
    #[must_use]
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.credential = Some(Credential::Bearer(token.into()));
        self
    }

    /// Calls as an agent.
    #[must_use]
    pub fn agent(mut self, tokens: Arc<TokenManager>) -> Self {
        self.credential = Some(Credential::Agent(tokens));
        self
    }

    /// Signs every attempt with the key's signing secret (`ca_sig_…`).
    #[must_use]
    pub fn signing_secret(mut self, secret: impl Into<String>) -> Self {
        self.signer = Some(RequestSigner::new(secret));
        self
    }

    /// The longest one attempt may take (default 30 s: a synchronous task may run that long).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry rules (default: 3 attempts, 0.5 s × 2ⁿ capped at 5 s, `Retry-After` up to 60 s).
    #[must_use]
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Shares a retry budget between clients (default: one per client).
    #[must_use]
    pub fn retry_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The endpoint's circuit breaker (default: opens at 50 % failures over 30 s once 5 calls were seen, for
    /// 10 s growing to 1 min while it keeps failing). Server errors, timeouts and connection failures count;
    /// the caller's own 4xx (and 429, a quota, not an outage) do not.
    #[must_use]
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::Protocol("a client needs at least one endpoint".into()));
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for config in &self.endpoints {
            let base = reqwest::Url::parse(config.url.trim_end_matches('/'))
                .map_err(|e| ClientError::Protocol(format!("the endpoint {:?} is not a URL: {e}", config.url)))?;
            if !matches!(base.scheme(), "http" | "https") {
                return Err(ClientError::Protocol(format!("the endpoint {base} must be http:// or https://")));
            }
            endpoints.push(Endpoint::new(base, config, self.breaker));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("cloud-agent-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        let inner = Arc::new(Inner {
            http,
            credential: self.credential,
            signer: self.signer,
            timeout: self.timeout,
            retry: self.retry,
            budget: self.budget.unwrap_or_default(),
            balancer: Balancer::new(endpoints, self.balance),
            capabilities: std::sync::Mutex::new(None),
            health: std::sync::Mutex::new(None),
        });
        if let Some(every) = self.probe_every {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| ClientError::Protocol("health checks need a tokio runtime to run on".into()))?;
            handle.spawn(probe(Arc::downgrade(&inner), every));
        }
        Ok(Client { inner })
    }
}

/// Probes every endpoint each `every` until the client is dropped.
async fn probe(client: std::sync::Weak<Inner>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = client.upgrade() else { return };
        for endpoint in &inner.balancer.endpoints {
            let mut url = endpoint.base.clone();
            url.set_path(&format!("{}/health/ready", endpoint.base.path().trim_end_matches('/')));
            let ready = inner.http.get(url).timeout(PROBE_TIMEOUT.min(every)).send().await;
            endpoint.observe(!ready.is_ok_and(|r| r.status().is_success()));
        }
    }
}

/// The longest a `/health/ready` probe waits.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Client::health`] reuses an answer.
pub const HEALTH_CACHE: Duration = Duration::from_mins(1);

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    credential: Option<Credential>,
    signer: Option<RequestSigner>,
    timeout: Duration,
    retry: RetryPolicy,
    budget: Arc<RetryBudget>,
    balancer: Balancer,
    /// The last capabilities answer and when it came.
    capabilities: std::sync::Mutex<Option<(tokio::time::Instant, crate::api::tasks::Capabilities)>>,
    /// The last health report and when it came.
    health: std::sync::Mutex<Option<(tokio::time::Instant, crate::api::health::HealthReport)>>,
}

/// A client of one deployment. Cheap to clone; clones share connections and the retry budget.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// One request, as every attempt sends it.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(&'a str, String)>,
    body: Option<Vec<u8>>,
    /// Delivering it twice does no harm: a safe method, or a body with an idempotency key.
    replayable: bool,
}

/// A successful answer: its status and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: bytes::Bytes,
}

impl Client {
    /// A client of the deployment at `endpoint` (its base URL, e.g. `https://agents.example.com`).
    pub fn builder(endpoint: impl Into<String>) -> ClientBuilder {
        Self::builder_for([EndpointConfig::new(endpoint)])
    }

    /// A client of a deployment with several endpoints, each with its weight and region.
    pub fn builder_for(endpoints: impl IntoIterator<Item = EndpointConfig>) -> ClientBuilder {
        ClientBuilder {
            endpoints: endpoints.into_iter().collect(),
            balance: Balance::default(),
            credential: None,
            signer: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            budget: None,
            breaker: BreakerConfig::default(),
            probe_every: None,
        }
    }

    /// The first endpoint's breaker as it stands (state, failure rate, calls seen).
    pub fn breaker_state(&self) -> Snapshot {
        self.inner.balancer.endpoints[0].breaker.snapshot()
    }

    /// Every endpoint as the client knows it (health, breaker, calls in flight, latency), for a status screen.
    pub fn endpoints(&self) -> Vec<EndpointSnapshot> {
        self.inner.balancer.endpoints.iter().map(Endpoint::snapshot).collect()
    }

    /// The deployment's health report (`GET /health`, public), from the endpoint the balancer picks; reused for
    /// [`HEALTH_CACHE`]. A failing deployment answers 503 with a report, which is returned like any other (its
    /// `status` is `fail`); only an endpoint that cannot be reached, or answers no report, is an error.
    pub async fn health(&self) -> Result<crate::api::health::HealthReport, ClientError> {
        if let Some((at, report)) = &*self.inner.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
            && at.elapsed() < HEALTH_CACHE
        {
            return Ok(report.clone());
        }
        self.health_now().await
    }

    /// [`Client::health`] read now, never from the cache (a live dashboard); the reading refreshes the cache.
    pub async fn health_now(&self) -> Result<crate::api::health::HealthReport, ClientError> {
        let at = self.inner.balancer.pick(None).ok_or_else(|| ClientError::Protocol("no endpoints".into()))?;
        let endpoint = &self.inner.balancer.endpoints[at];
        let mut url = endpoint.base.clone();
        url.set_path(&format!("{}/health", endpoint.base.path().trim_end_matches('/')));
        let response = self.inner.http.get(url).send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(&e))?;
        let report: crate::api::health::HealthReport =
            serde_json::from_slice(&body).map_err(|_| ClientError::from_answer(status.as_u16(), &body, None))?;
        *self.inner.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((tokio::time::Instant::now(), report.clone()));
        Ok(report)
    }

    /// The retry budget's tokens left (see [`RetryBudget`]).
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.inner.budget
    }

    async fn authorize(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ClientError> {
        Ok(match &self.inner.credential {
            None => request,
            Some(Credential::ApiKey(key)) => request.header("x-api-key", key),
            Some(Credential::Bearer(token)) => request.bearer_auth(token),
            Some(Credential::Agent(tokens)) => {
                let token = tokens.token().await.map_err(|e| ClientError::Unauthorized(Box::new(agent_problem(&e))))?;
                request.bearer_auth(token)
            }
        })
    }

    /// Sends `call`, retrying as the rules allow (a retry goes to another endpoint than the one that failed, when
    /// there is one); a non-2xx answer becomes its [`ClientError`].
    async fn send(&self, call: Call<'_>) -> Result<Answer, ClientError> {
        let (path, raw_query) = call.path.split_once('?').map_or((call.path, None), |(p, q)| (p, Some(q)));
        let mut retrying = Retrying::new(self.inner.retry, &self.inner.budget, call.replayable);
        let mut failed_at = None;
        // Compressed once for every attempt; the signature covers the decoded body (what the server verifies).
        let gzipped = call.body.as_deref().filter(|b| b.len() > GZIP_ABOVE).map(gzip).transpose()?;
        loop {
            let (at, permit) = self.choose(failed_at)?;
            let endpoint = &self.inner.balancer.endpoints[at];
            let mut url = endpoint.base.clone();
            url.set_path(&format!("{}{path}", endpoint.base.path().trim_end_matches('/')));
            url.set_query(raw_query);
            if !call.query.is_empty() {
                url.query_pairs_mut().extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
            }
            let mut request = self.inner.http.request(call.method.clone(), url);
            if let Some(body) = &call.body {
                request = request.header("content-type", "application/json").body(body.clone());
            }
            let mut request =
                self.authorize(request).await?.build().map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Some(signer) = &self.inner.signer {
                // Signed per attempt: the server refuses a signature it has seen (replay protection).
                signer.sign(&mut request);
            }
            if let Some(gzipped) = &gzipped {
                *request.body_mut() = Some(gzipped.clone().into());
                request.headers_mut().insert(reqwest::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            let in_flight = endpoint.start();
            let started = tokio::time::Instant::now();
            let (attempt, outcome) = match self.inner.http.execute(request).await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    match response.bytes().await {
                        Ok(body) if status.is_success() => (Attempt::Done, Ok(Answer { status, body })),
                        Ok(body) => (
                            Attempt::Status { status: status.as_u16(), retry_after },
                            Err(ClientError::from_answer(status.as_u16(), &body, retry_after)),
                        ),
                        Err(e) => (Attempt::Lost { timed_out: e.is_timeout() }, Err(self.transport(&e))),
                    }
                }
                // A refused connection never reached the server: any method may be sent again.
                Err(e) if e.is_connect() => (Attempt::NotSent, Err(self.transport(&e))),
                Err(e) => (Attempt::Lost { timed_out: e.is_timeout() }, Err(self.transport(&e))),
            };
            drop(in_flight);
            // The endpoint failed the call (its 5xx, no answer); the caller's 4xx and 429 say nothing of it.
            let failed = match attempt {
                Attempt::Done => false,
                Attempt::NotSent | Attempt::Lost { .. } => true,
                Attempt::Status { status, .. } => status >= 500,
            };
            permit.report(failed);
            endpoint.record(started.elapsed(), failed);
            failed_at = failed.then_some(at);
            match retrying.after(attempt) {
                Verdict::RetryAfter(wait) => {
                    tracing::debug!(path = call.path, attempt = retrying.attempts(), ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Verdict::Stop => {
                    if outcome.is_ok() {
                        retrying.succeeded();
                    } else {
                        retrying.ended();
                    }
                    return outcome;
                }
            }
        }
    }

    /// The endpoint for the next attempt and its breaker's permit: the balancer's choice, else the next one whose
    /// breaker admits a call; `CircuitOpen` (with the shortest wait) when none does.
    fn choose(&self, avoid: Option<usize>) -> Result<(usize, cloud_agent_breaker::Permit<&Breaker>), ClientError> {
        let endpoints = &self.inner.balancer.endpoints;
        let first = self.inner.balancer.pick(avoid).ok_or_else(|| ClientError::Protocol("no endpoints".into()))?;
        let mut wait = Duration::MAX;
        for offset in 0..endpoints.len() {
            let at = (first + offset) % endpoints.len();
            match Breaker::try_acquire(&endpoints[at].breaker) {
                Ok(permit) => return Ok((at, permit)),
                Err(retry_after) => wait = wait.min(retry_after),
            }
        }
        Err(ClientError::CircuitOpen { retry_after: wait })
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() { ClientError::Timeout(self.inner.timeout) } else { ClientError::Network(e.to_string()) }
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&str, String)>,
    ) -> Result<T, ClientError> {
        let answer = self.send(Call { method: Method::GET, path, query, body: None, replayable: true }).await?;
        decode(&answer)
    }

    /// A request with a body; `replayable` when it carries an idempotency key.
    pub(crate) async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        replayable: bool,
    ) -> Result<(StatusCode, T), ClientError> {
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.send(Call { method, path, query: Vec::new(), body, replayable }).await?;
        Ok((answer.status, decode(&answer)?))
    }
}

impl Client {
    /// Any route, for callers that work in JSON (the `cloudagent` CLI): `path` may carry a query string already
    /// encoded. `replayable` says the request may be delivered twice (a safe method is always); the answer's
    /// status and body (`null` when empty).
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        replayable: bool,
    ) -> Result<(StatusCode, serde_json::Value), ClientError> {
        let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| ClientError::Protocol(e.to_string()))?;
        let answer = self.send(Call { method, path, query: Vec::new(), body, replayable: replayable || safe }).await?;
        if answer.body.is_empty() {
            return Ok((answer.status, serde_json::Value::Null));
        }
        Ok((answer.status, decode(&answer)?))
    }

    /// A route that answers text (the Prometheus exposition of `GET /api/v1/metrics`): its body as it came, sent
    /// like every call (retries, breaker, signing).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let answer =
            self.send(Call { method: Method::GET, path, query: Vec::new(), body: None, replayable: true }).await?;
        String::from_utf8(answer.body.into())
            .map_err(|e| ClientError::Protocol(format!("an answer that is not UTF-8: {e}")))
    }
}

/// Request bodies larger than this are sent gzip-encoded (JSON shrinks several times; smaller ones gain little).
pub const GZIP_ABOVE: usize = 1024;

fn gzip(body: &[u8]) -> Result<bytes::Bytes, ClientError> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Into::into)
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

fn decode<T: DeserializeOwned>(answer: &Answer) -> Result<T, ClientError> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| ClientError::Protocol(format!("a {} answer this client cannot read: {e}", answer.status.as_u16())))
}

fn agent_problem(e: &crate::SdkError) -> cloud_agent_wire::Problem {
    cloud_agent_wire::Problem::new(StatusCode::UNAUTHORIZED, "agent-session", "Agent session unavailable")
        .detail(e.to_string())
}
