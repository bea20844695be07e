//! The `inference` task: one chat completion from an OpenAI-compatible endpoint (`POST {url}/chat/completions`),
//! set in configuration, through the SSRF-safe client.
//!
//! A circuit breaker guards the endpoint: after [`FAILURES_TO_OPEN`] failures in a row (no answer, a 5xx, an
//! unreadable answer) it opens for [`OPEN_FOR`], and calls are not made. Its fallback: the answer this instance
//! last got for the same request (model, system, prompt, options), marked `"source": "cache"`; without one, the
//! task fails at once with a 503 `model-unavailable` problem rather than waiting on a failing model. A failure
//! while the breaker is closed is transient (the engine retries it), unless a cached answer can stand in.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use cloud_agent_breaker::{Breaker, BreakerConfig, State};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::contract::{Context, Failure, Rejection};
use crate::input::{self, InputError};
use crate::outbound::{Outbound, OutboundRequest};

pub const NAME: &str = "inference";
pub const DESCRIPTION: &str = "Asks the configured OpenAI-compatible model for one chat completion (a prompt and an \
    optional system message); answers its text, model, finish reason and token usage. When the model is failing, a \
    cached answer to the same request stands in, else the task fails with 503 model-unavailable.";

/// Failures in a row that open the breaker.
pub const FAILURES_TO_OPEN: usize = 3;
/// How long an open breaker refuses calls before letting one through.
pub const OPEN_FOR: Duration = Duration::from_secs(30);
/// How long a cached answer may stand in.
pub const CACHE_TTL: Duration = Duration::from_hours(1);
/// Answers kept per instance.
const CACHE_ENTRIES: usize = 256;
/// The longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// The largest answer read from the model.
const MAX_ANSWER_BYTES: usize = 512 * 1024;
/// One call's own limit (the task's deadline also applies).
const CALL_TIMEOUT: Duration = Duration::from_mins(1);

/// Where the model is: read once, when the registry is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API's base URL (`https://api.openai.com/v1`); unset, every task fails with 503 `model-unavailable`.
    pub url: Option<String>,
    pub model: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Settings {
    /// `CLOUD_AGENT_INFERENCE_URL`, `CLOUD_AGENT_INFERENCE_MODEL` (default `gpt-4o-mini`) and
    /// `CLOUD_AGENT_INFERENCE_API_KEY`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            url: var("CLOUD_AGENT_INFERENCE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            model: var("CLOUD_AGENT_INFERENCE_MODEL").unwrap_or_else(|| "gpt-4o-mini".into()),
            api_key: var("CLOUD_AGENT_INFERENCE_API_KEY"),
        }
    }
}

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "inference input",
        "type": "object",
        "additionalProperties": false,
        "required": ["prompt"],
        "properties": {
            "prompt": { "type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS },
            "system": { "type": "string", "maxLength": MAX_PROMPT_CHARS },
            "max_tokens": { "type": "integer", "minimum": 1, "maximum": 8192 },
            "temperature": { "type": "number", "minimum": 0, "maximum": 2 }
        }
    })
}

/// What a task asks the model, checked.
#[derive(Debug, Clone, PartialEq)]
struct Ask {
    prompt: String,
    system: Option<String>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
}

fn parse(input: &Value) -> Result<Ask, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["prompt", "system", "max_tokens", "temperature"])?;
    let prompt = input::string(obj, "prompt", MAX_PROMPT_CHARS)?.to_owned();
    if prompt.trim().is_empty() {
        return Err(InputError::new("/prompt", "prompt must not be empty"));
    }
    let system = match obj.get("system") {
        None => None,
        Some(_) => Some(input::string(obj, "system", MAX_PROMPT_CHARS)?.to_owned()),
    };
    let max_tokens = match obj.get("max_tokens") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=8192).contains(n))
                .ok_or_else(|| InputError::new("/max_tokens", "max_tokens must be an integer 1-8192"))?,
        ),
    };
    let temperature = match obj.get("temperature") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|t| (0.0..=2.0).contains(t))
                .ok_or_else(|| InputError::new("/temperature", "temperature must be a number 0-2"))?,
        ),
    };
    Ok(Ask { prompt, system, max_tokens, temperature })
}

/// The endpoint's breaker (the project's own): open after [`FAILURES_TO_OPEN`] failures in a row, for
/// [`OPEN_FOR`], then one trial call decides.
fn breaker() -> Breaker {
    Breaker::new(
        NAME,
        BreakerConfig {
            consecutive_failures: Some(FAILURES_TO_OPEN),
            // The streak alone opens it: no failure rate, no slow-call rate.
            minimum_calls: usize::MAX,
            open_duration: OPEN_FOR,
            open_backoff: 1.0,
            max_open_duration: OPEN_FOR,
            half_open_calls: 1,
            ..BreakerConfig::default()
        },
    )
}

/// The handler, with its breaker and cache (per instance).
pub struct Inference {
    settings: Settings,
    breaker: std::sync::Arc<Breaker>,
    cache: Mutex<lru::LruCache<[u8; 32], (Instant, Value)>>,
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inference").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Why a call produced no answer.
enum CallError {
    /// The model or its endpoint is failing: counts against the breaker.
    Failing(String),
    /// The model refused this request (4xx): the request's fault, or the deployment's (a bad key).
    Refused(Rejection),
}

fn unavailable(detail: String) -> Rejection {
    Rejection::new(503, "model-unavailable", "Model unavailable", detail)
}

impl Inference {
    pub fn new(settings: Settings) -> Self {
        let entries = NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self { settings, breaker: std::sync::Arc::new(breaker()), cache: Mutex::new(lru::LruCache::new(entries)) }
    }

    /// The endpoint's breaker, for the server's listing.
    pub fn breaker(&self) -> std::sync::Arc<Breaker> {
        self.breaker.clone()
    }

    pub async fn run(&self, cx: &Context, input: &Value) -> Result<Value, Failure> {
        let ask = parse(input)?;
        let Some(url) = self.settings.url.as_deref() else {
            return Err(Failure::Rejected(unavailable(
                "no model is configured for this deployment (CLOUD_AGENT_INFERENCE_URL)".into(),
            )));
        };
        let key = self.cache_key(&cx.task().tenant, &ask);
        // A permit dropped unreported (the task's deadline cut the call off: a hanging endpoint) is a failure.
        let Ok(permit) = Breaker::try_acquire(&*self.breaker) else {
            return self.fallback(&key, "the model endpoint keeps failing and its circuit breaker is open");
        };
        match self.call(cx.outbound(), url, &ask).await {
            Ok(answer) => {
                permit.report(false);
                self.cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .put(key, (Instant::now(), answer.clone()));
                Ok(with_source(answer, "model"))
            }
            // The model answered: it works, whatever it thought of this request.
            Err(CallError::Refused(rejection)) => {
                permit.report(false);
                Err(Failure::Rejected(rejection))
            }
            Err(CallError::Failing(why)) => {
                permit.report(true);
                if self.breaker.state() == State::Open {
                    tracing::warn!(model = %self.settings.model, "the inference endpoint's circuit breaker opened");
                    return self.fallback(&key, &format!("{why}, and its circuit breaker is now open"));
                }
                // Closed still: a cached answer stands in, else the engine retries the attempt.
                match self.fallback(&key, &why) {
                    Err(Failure::Rejected(_)) => Err(Failure::Transient(why)),
                    other => other,
                }
            }
        }
    }

    /// Per tenant: whether another tenant asked the same cannot be learnt from a cached answer.
    fn cache_key(&self, tenant: &str, ask: &Ask) -> [u8; 32] {
        let canonical = json!([tenant, self.settings.model, ask.system, ask.prompt, ask.max_tokens, ask.temperature]);
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }

    /// The cached answer to the same request, else 503 `model-unavailable` naming `why`.
    fn fallback(&self, key: &[u8; 32], why: &str) -> Result<Value, Failure> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(key) {
            Some((at, answer)) if at.elapsed() < CACHE_TTL => Ok(with_source(answer.clone(), "cache")),
            _ => Err(Failure::Rejected(unavailable(format!(
                "{why}, and no earlier answer to this request is cached; retry in {} s",
                OPEN_FOR.as_secs()
            )))),
        }
    }

    async fn call(&self, outbound: &Outbound, url: &str, ask: &Ask) -> Result<Value, CallError> {
        let mut messages = Vec::new();
        if let Some(system) = &ask.system {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.push(json!({ "role": "user", "content": ask.prompt }));
        let mut body = Map::new();
        body.insert("model".into(), json!(self.settings.model));
        body.insert("messages".into(), Value::Array(messages));
        if let Some(max) = ask.max_tokens {
            body.insert("max_tokens".into(), json!(max));
        }
        if let Some(t) = ask.temperature {
            body.insert("temperature".into(), json!(t));
        }
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = &self.settings.api_key {
            headers.push(("authorization".to_owned(), format!("Bearer {key}")));
        }
        let request = OutboundRequest {
            method: http::Method::POST,
            url: format!("{url}/chat/completions"),
            headers,
            body: Some(Value::Object(body).to_string().into()),
            timeout: Some(CALL_TIMEOUT),
        };
        let response = match outbound.send_limited(request, MAX_ANSWER_BYTES).await {
            Ok(response) => response,
            Err(e) if e.is_refused_by_policy() => {
                return Err(CallError::Refused(unavailable(format!(
                    "the configured model endpoint is refused by the outbound policy: {e}"
                ))));
            }
            Err(e) => return Err(CallError::Failing(format!("the model endpoint did not answer: {e}"))),
        };
        let answer: Option<Value> = serde_json::from_slice(&response.body).ok();
        let message = answer.as_ref().and_then(|a| a.pointer("/error/message")).and_then(Value::as_str);
        match response.status {
            200..=299 => {}
            // The request itself: too long for the model's context, an option it does not take.
            status @ (400 | 413 | 422) => {
                let detail = message.unwrap_or("no reason given");
                return Err(CallError::Refused(
                    Rejection::new(422, "model-refused", "Model refused the request", format!("{status}: {detail}"))
                        .at(""),
                ));
            }
            // Busy or failing: another attempt may succeed.
            408 | 425 | 429 | 500..=599 => {
                return Err(CallError::Failing(format!("the model endpoint answered {}", response.status)));
            }
            // The deployment's setting: credentials refused (401, 403), no such model or path (404), ...
            status => {
                return Err(CallError::Refused(unavailable(format!(
                    "the model endpoint refused this deployment's request ({status}); check \
                     CLOUD_AGENT_INFERENCE_URL, _MODEL and _API_KEY"
                ))));
            }
        }
        let answer = answer.ok_or_else(|| CallError::Failing("the model's answer is not JSON".into()))?;
        let choice =
            answer.pointer("/choices/0").ok_or_else(|| CallError::Failing("the answer has no choice".into()))?;
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::Failing("the answer's first choice has no text".into()))?;
        Ok(json!({
            "text": text,
            "model": answer.get("model").cloned().unwrap_or_else(|| json!(self.settings.model)),
            "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null),
            "usage": answer.get("usage").cloned().unwrap_or(Value::Null),
        }))
    }
}

fn with_source(mut answer: Value, source: &str) -> Value {
    answer["source"] = json!(source);
    answer
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};

    use super::*;
    use crate::contract::TaskInfo;
    use crate::outbound::Policy;
    use crate::outbound::testing::{Reply, serve};

    fn context() -> Context {
        let info = TaskInfo { id: "t_1".into(), tenant: "acme".into(), kind: NAME.into(), attempt: 1 };
        Context::new(Outbound::new(Policy { allow_loopback: true, ..Policy::default() }), info)
    }

    fn completion(text: &str) -> Vec<u8> {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "stand-in-1",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7 }
        })
        .to_string()
        .into_bytes()
    }

    /// A stand-in model that answers with `status` (settable), echoing the prompt it was sent.
    async fn stand_in(status: Arc<AtomicU16>, seen: Arc<Mutex<Vec<Value>>>) -> String {
        let addr = serve(move |request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let auth = request.header("authorization").unwrap_or_default().to_owned();
            seen.lock().unwrap().push(json!({ "path": request.path, "auth": auth, "body": body }));
            match status.load(Ordering::SeqCst) {
                200 => {
                    let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
                    let prompt = last["content"].as_str().unwrap_or("?").to_owned();
                    Reply::new(200, completion(&format!("you said: {prompt}")))
                }
                other => Reply::new(other, r#"{"error": {"message": "context length exceeded"}}"#),
            }
        })
        .await;
        format!("http://{addr}/v1")
    }

    fn settings(url: String) -> Settings {
        Settings { url: Some(url), model: "stand-in-1".into(), api_key: Some("sk-test".into()) }
    }

    #[tokio::test]
    async fn asks_the_model_and_answers_its_text() {
        let (status, seen) = (Arc::new(AtomicU16::new(200)), Arc::new(Mutex::new(Vec::new())));
        let handler = Inference::new(settings(stand_in(status, seen.clone()).await));
        let input = json!({ "prompt": "hello", "system": "be brief", "max_tokens": 10, "temperature": 0.2 });
        let out = handler.run(&context(), &input).await.unwrap();
        assert_eq!(out["text"], "you said: hello");
        assert_eq!((out["source"].as_str(), out["usage"]["total_tokens"].as_u64()), (Some("model"), Some(7)));
        let request = seen.lock().unwrap()[0].clone();
        assert_eq!(request["path"], "/v1/chat/completions");
        assert_eq!(request["auth"], "Bearer sk-test");
        assert_eq!(request["body"]["model"], "stand-in-1");
        assert_eq!(request["body"]["messages"][0], json!({ "role": "system", "content": "be brief" }));
        assert_eq!(request["body"]["max_tokens"], 10);
    }

    #[tokio::test]
    async fn a_failing_model_opens_the_breaker_and_the_cache_stands_in() {
        let (status, seen) = (Arc::new(AtomicU16::new(200)), Arc::new(Mutex::new(Vec::new())));
        let handler = Inference::new(settings(stand_in(status.clone(), seen.clone()).await));
        let cx = context();
        handler.run(&cx, &json!({ "prompt": "cached" })).await.unwrap();
        status.store(503, Ordering::SeqCst);
        // Failures below the threshold: a cached answer stands in; without one, the attempt is retried.
        let stood_in = handler.run(&cx, &json!({ "prompt": "cached" })).await.unwrap();
        assert_eq!((stood_in["text"].as_str(), stood_in["source"].as_str()), (Some("you said: cached"), Some("cache")));
        let transient = handler.run(&cx, &json!({ "prompt": "new" })).await.unwrap_err();
        assert!(matches!(transient, Failure::Transient(ref m) if m.contains("503")), "{transient:?}");
        // The third failure opens it: no more calls; a new prompt is 503 model-unavailable at once.
        let _ = handler.run(&cx, &json!({ "prompt": "new" })).await;
        let calls = seen.lock().unwrap().len();
        let refused = handler.run(&cx, &json!({ "prompt": "other" })).await.unwrap_err();
        let Failure::Rejected(rejection) = refused else { panic!("{refused:?}") };
        assert_eq!((rejection.status, rejection.kind.as_str()), (503, "model-unavailable"));
        assert!(rejection.detail.contains("circuit breaker is open"), "{}", rejection.detail);
        assert_eq!(handler.run(&cx, &json!({ "prompt": "cached" })).await.unwrap()["source"], "cache");
        assert_eq!(seen.lock().unwrap().len(), calls, "an open breaker makes no call");
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let (status, seen) = (Arc::new(AtomicU16::new(400)), Arc::new(Mutex::new(Vec::new())));
        let handler = Inference::new(settings(stand_in(status.clone(), seen).await));
        let refused = handler.run(&context(), &json!({ "prompt": "x" })).await.unwrap_err();
        assert!(
            matches!(&refused, Failure::Rejected(r) if r.kind == "model-refused" && r.detail.contains("context length"))
        );
        status.store(401, Ordering::SeqCst);
        let refused = handler.run(&context(), &json!({ "prompt": "x" })).await.unwrap_err();
        assert!(matches!(&refused, Failure::Rejected(r) if r.status == 503 && r.detail.contains("(401)")));
        let unconfigured = Inference::new(Settings { url: None, model: "m".into(), api_key: None });
        let refused = unconfigured.run(&context(), &json!({ "prompt": "x" })).await.unwrap_err();
        assert!(matches!(&refused, Failure::Rejected(r) if r.detail.contains("CLOUD_AGENT_INFERENCE_URL")));
        let bad = unconfigured.run(&context(), &json!({ "prompt": "x", "temperature": 3 })).await.unwrap_err();
        assert!(matches!(bad, Failure::Input(e) if e.pointer == "/temperature"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_lets_one_call_through_after_its_time() {
        let handler =
            Inference::new(Settings { url: Some("http://127.0.0.1:9/v1".into()), model: "m".into(), api_key: None });
        let call = || Breaker::try_acquire(&*handler.breaker);
        for _ in 0..FAILURES_TO_OPEN {
            call().unwrap().report(true);
        }
        assert_eq!(call().unwrap_err(), OPEN_FOR, "open for its whole time");
        tokio::time::advance(OPEN_FOR).await;
        let trial = call().expect("half open after its time: one trial call");
        assert!(call().is_err(), "the others wait for the trial's outcome");
        trial.report(true);
        assert!(call().is_err(), "a failed trial opens it again");
        tokio::time::advance(OPEN_FOR).await;
        call().unwrap().report(false);
        assert_eq!(handler.breaker.state(), State::Closed, "a good trial closes it");
        call().unwrap().report(false);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_cut_off_by_the_deadline_counts_as_a_failure() {
        let addr = crate::outbound::testing::silent().await;
        let handler = Inference::new(settings(format!("http://{addr}/v1")));
        for _ in 0..FAILURES_TO_OPEN {
            let (cx, input) = (context(), json!({"prompt": "x"}));
            let cut = tokio::time::timeout(Duration::from_secs(1), handler.run(&cx, &input)).await;
            assert!(cut.is_err(), "the silent endpoint never answers");
        }
        assert_eq!(handler.breaker.state(), State::Open, "three calls cut off by their deadline open the breaker");
    }
}
