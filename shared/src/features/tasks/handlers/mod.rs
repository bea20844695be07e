//! The built-in task handlers, in one list: each with its name, description, input schema and limits (what
//! `GET /api/capabilities` shows), and how it runs. Pure handlers are CPU work and run on the blocking pool, so a
//! task's deadline is kept even while one computes; outbound ones go through the SSRF-safe client.

pub mod api_tester;
pub mod data_transform;
pub mod echo;
pub mod file_processing;
pub mod health_check;
pub mod image_metadata;
pub mod input;
pub mod json_validator;
pub mod smart_routing;
pub mod text_analysis;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

pub use input::InputError;

use crate::outbound::Outbound;

/// Why a handler did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerFailure {
    /// The input is wrong: retrying cannot help (422).
    #[error("invalid input: {0}")]
    Input(#[from] InputError),
    /// Something outside the input failed; another attempt may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
}

type Outgoing =
    for<'a> fn(&'a Outbound, &'a Value) -> Pin<Box<dyn Future<Output = Result<Value, InputError>> + Send + 'a>>;

/// How a handler runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// CPU only, on the blocking pool.
    Pure(fn(&Value) -> Result<Value, InputError>),
    /// Outbound HTTP through the SSRF-safe client.
    Outbound(Outgoing),
    /// Echo: its `delay_ms` and `fail` make it the controlled handler for testing a pipeline.
    Echo,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pure(_) => "Pure",
            Self::Outbound(_) => "Outbound",
            Self::Echo => "Echo",
        })
    }
}

/// One handler.
#[derive(Debug, Clone, Copy)]
pub struct HandlerSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: fn() -> Value,
    /// Declared long: runs on the queue even when the caller did not ask for `async`.
    pub long: bool,
    /// The deadline when the caller gives none, and the most a caller may ask for.
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub run: Run,
}

macro_rules! outbound {
    ($module:ident) => {{
        fn run<'a>(
            client: &'a Outbound,
            input: &'a Value,
        ) -> Pin<Box<dyn Future<Output = Result<Value, InputError>> + Send + 'a>> {
            Box::pin($module::run(client, input))
        }
        Run::Outbound(run)
    }};
}

/// Every handler, in the order capabilities lists them.
pub static HANDLERS: &[HandlerSpec] = &[
    HandlerSpec {
        name: echo::NAME,
        description: echo::DESCRIPTION,
        input_schema: echo::input_schema,
        long: false,
        default_timeout_ms: 5_000,
        max_timeout_ms: 60_000,
        run: Run::Echo,
    },
    HandlerSpec {
        name: data_transform::NAME,
        description: data_transform::DESCRIPTION,
        input_schema: data_transform::input_schema,
        long: false,
        default_timeout_ms: 5_000,
        max_timeout_ms: 30_000,
        run: Run::Pure(data_transform::run),
    },
    HandlerSpec {
        name: json_validator::NAME,
        description: json_validator::DESCRIPTION,
        input_schema: json_validator::input_schema,
        long: false,
        default_timeout_ms: 5_000,
        max_timeout_ms: 30_000,
        run: Run::Pure(json_validator::run),
    },
    HandlerSpec {
        name: text_analysis::NAME,
        description: text_analysis::DESCRIPTION,
        input_schema: text_analysis::input_schema,
        long: false,
        default_timeout_ms: 5_000,
        max_timeout_ms: 30_000,
        run: Run::Pure(text_analysis::run),
    },
    HandlerSpec {
        name: smart_routing::NAME,
        description: smart_routing::DESCRIPTION,
        input_schema: smart_routing::input_schema,
        long: false,
        default_timeout_ms: 2_000,
        max_timeout_ms: 10_000,
        run: Run::Pure(smart_routing::run),
    },
    HandlerSpec {
        name: image_metadata::NAME,
        description: image_metadata::DESCRIPTION,
        input_schema: image_metadata::input_schema,
        long: false,
        default_timeout_ms: 8_000,
        max_timeout_ms: 30_000,
        run: Run::Pure(image_metadata::run),
    },
    HandlerSpec {
        name: file_processing::NAME,
        description: file_processing::DESCRIPTION,
        input_schema: file_processing::input_schema,
        long: false,
        default_timeout_ms: 5_000,
        max_timeout_ms: 30_000,
        run: Run::Pure(file_processing::run),
    },
    HandlerSpec {
        name: health_check::NAME,
        description: health_check::DESCRIPTION,
        input_schema: health_check::input_schema,
        long: false,
        default_timeout_ms: 8_000,
        max_timeout_ms: 30_000,
        run: outbound!(health_check),
    },
    HandlerSpec {
        name: api_tester::NAME,
        description: api_tester::DESCRIPTION,
        input_schema: api_tester::input_schema,
        // Up to ten requests of five seconds each, with expectations: the queue, not a caller's open request.
        long: true,
        default_timeout_ms: 15_000,
        max_timeout_ms: 60_000,
        run: outbound!(api_tester),
    },
    HandlerSpec {
        name: webhook::NAME,
        description: webhook::DESCRIPTION,
        input_schema: webhook::input_schema,
        long: false,
        default_timeout_ms: 8_000,
        max_timeout_ms: 30_000,
        run: outbound!(webhook),
    },
];

pub fn find(name: &str) -> Option<&'static HandlerSpec> {
    HANDLERS.iter().find(|h| h.name == name)
}

/// The names, for error messages.
pub fn names() -> String {
    HANDLERS.iter().map(|h| h.name).collect::<Vec<_>>().join(", ")
}

/// Runs `spec` on `input`. Pure work goes to the blocking pool so the caller's deadline can fire on time; a panic
/// inside a handler is a transient failure of this attempt, never a crashed instance.
pub async fn execute(spec: &HandlerSpec, client: &Outbound, input: Value) -> Result<Value, HandlerFailure> {
    match spec.run {
        Run::Pure(run) => match tokio::task::spawn_blocking(move || run(&input)).await {
            Ok(result) => result.map_err(HandlerFailure::Input),
            Err(e) => Err(HandlerFailure::Transient(format!("the handler stopped: {e}"))),
        },
        Run::Outbound(run) => run(client, &input).await.map_err(HandlerFailure::Input),
        Run::Echo => echo::run(&input).await,
    }
}

/// Checks `input` against the handler's published schema, so a queued task's bad input is refused with 422 at
/// once rather than failing later on the queue. Each schema is compiled once per instance. The handler still
/// checks its input itself (what a schema cannot say: decoded sizes, formats).
pub fn validate_input(spec: &HandlerSpec, input: &Value) -> Result<(), InputError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    static COMPILED: std::sync::LazyLock<Mutex<HashMap<&'static str, Arc<jsonschema::Validator>>>> =
        std::sync::LazyLock::new(Mutex::default);
    let validator = {
        let mut compiled = COMPILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = compiled.get(spec.name) {
            v.clone()
        } else {
            let built = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&(spec.input_schema)())
                .map_err(|e| {
                    InputError::new("", format!("the {} handler's schema does not compile: {e}", spec.name))
                })?;
            compiled.entry(spec.name).or_insert_with(|| Arc::new(built)).clone()
        }
    };
    match validator.iter_errors(input).next() {
        None => Ok(()),
        Some(error) => {
            let pointer = error.instance_path().to_string();
            Err(InputError::new(pointer, format!("{error} (see the {} schema in GET /api/capabilities)", spec.name)))
        }
    }
}
