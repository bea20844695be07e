//! The built-in handlers, each behind its cargo feature (all on by default). Each has a descriptor (what the
//! listing shows) and its code; [`register`] adds every compiled-in one to a registry as runnable, and
//! [`register_for_requests`] adds the long ones as described only, so a route function does not link them and
//! their tasks run in the worker. Pure handlers are CPU work on the blocking pool; outbound ones use the
//! SSRF-safe client from their [`Context`].

// With no built-in compiled in, the adapter below has nothing to adapt.
#![cfg_attr(
    not(any(
        feature = "echo",
        feature = "data-transform",
        feature = "json-validator",
        feature = "text-analysis",
        feature = "smart-routing",
        feature = "image-metadata",
        feature = "file-processing",
        feature = "health-check",
        feature = "api-tester",
        feature = "webhook",
        feature = "inference"
    )),
    allow(dead_code, unused_imports, unused_macros)
)]

#[cfg(feature = "api-tester")]
pub mod api_tester;
#[cfg(feature = "data-transform")]
pub mod data_transform;
#[cfg(feature = "echo")]
pub mod echo;
#[cfg(feature = "file-processing")]
pub mod file_processing;
#[cfg(feature = "health-check")]
pub mod health_check;
#[cfg(any(feature = "webhook", feature = "health-check", feature = "api-tester"))]
mod http_input;
#[cfg(feature = "image-metadata")]
pub mod image_metadata;
#[cfg(feature = "inference")]
pub mod inference;
#[cfg(feature = "json-validator")]
pub mod json_validator;
#[cfg(feature = "smart-routing")]
pub mod smart_routing;
#[cfg(feature = "text-analysis")]
pub mod text_analysis;
#[cfg(feature = "webhook")]
pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::contract::{Context, Descriptor, Failure, Handler, INPUT_FAILURE, Limits, TRANSIENT_FAILURE};
use crate::input::InputError;
use crate::outbound::Outbound;
use crate::registry::Builder;

type Outgoing =
    for<'a> fn(&'a Outbound, &'a Value) -> Pin<Box<dyn Future<Output = Result<Value, InputError>> + Send + 'a>>;

/// How a built-in runs.
#[derive(Clone, Copy)]
enum Run {
    /// CPU only, on the blocking pool.
    #[allow(dead_code, reason = "only with a pure handler's feature")]
    Pure(fn(&Value) -> Result<Value, InputError>),
    /// Outbound HTTP through the SSRF-safe client.
    #[allow(dead_code, reason = "only with an outbound handler's feature")]
    Outbound(Outgoing),
    /// Echo: its `delay_ms` and `fail` make it the controlled handler for testing a pipeline.
    #[allow(dead_code, reason = "only with the echo feature")]
    Echo,
}

/// A built-in handler: its descriptor and its code.
struct Builtin {
    descriptor: &'static Descriptor,
    run: Run,
}

#[async_trait::async_trait]
impl Handler for Builtin {
    fn descriptor(&self) -> &'static Descriptor {
        self.descriptor
    }

    async fn run(&self, cx: &Context, input: Value) -> Result<Value, Failure> {
        match self.run {
            Run::Pure(run) => crate::contract::blocking(move || run(&input).map_err(Failure::Input)).await,
            Run::Outbound(run) => run(cx.outbound(), &input).await.map_err(Failure::Input),
            #[cfg(feature = "echo")]
            Run::Echo => echo::run(&input).await,
            #[cfg(not(feature = "echo"))]
            Run::Echo => unreachable!("echo is not compiled in"),
        }
    }
}

#[allow(unused_macros, reason = "only with an outbound handler's feature")]
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

/// What every built-in can end with besides a result.
const FAILURES: &[crate::contract::FailureKind] = &[INPUT_FAILURE, TRANSIENT_FAILURE];

/// The `echo` task type.
#[cfg(feature = "echo")]
pub static ECHO: Descriptor = Descriptor {
    name: echo::NAME,
    description: echo::DESCRIPTION,
    input_schema: echo::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 60_000 },
    failures: FAILURES,
};

/// The `data-transform` task type.
#[cfg(feature = "data-transform")]
pub static DATA_TRANSFORM: Descriptor = Descriptor {
    name: data_transform::NAME,
    description: data_transform::DESCRIPTION,
    input_schema: data_transform::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `json-validator` task type.
#[cfg(feature = "json-validator")]
pub static JSON_VALIDATOR: Descriptor = Descriptor {
    name: json_validator::NAME,
    description: json_validator::DESCRIPTION,
    input_schema: json_validator::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `text-analysis` task type.
#[cfg(feature = "text-analysis")]
pub static TEXT_ANALYSIS: Descriptor = Descriptor {
    name: text_analysis::NAME,
    description: text_analysis::DESCRIPTION,
    input_schema: text_analysis::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `smart-routing` task type.
#[cfg(feature = "smart-routing")]
pub static SMART_ROUTING: Descriptor = Descriptor {
    name: smart_routing::NAME,
    description: smart_routing::DESCRIPTION,
    input_schema: smart_routing::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 2_000, max_timeout_ms: 10_000 },
    failures: FAILURES,
};

/// The `image-metadata` task type.
#[cfg(feature = "image-metadata")]
pub static IMAGE_METADATA: Descriptor = Descriptor {
    name: image_metadata::NAME,
    description: image_metadata::DESCRIPTION,
    input_schema: image_metadata::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 8_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `file-processing` task type.
#[cfg(feature = "file-processing")]
pub static FILE_PROCESSING: Descriptor = Descriptor {
    name: file_processing::NAME,
    description: file_processing::DESCRIPTION,
    input_schema: file_processing::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 5_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `health-check` task type.
#[cfg(feature = "health-check")]
pub static HEALTH_CHECK: Descriptor = Descriptor {
    name: health_check::NAME,
    description: health_check::DESCRIPTION,
    input_schema: health_check::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 8_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `api-tester` task type.
#[cfg(feature = "api-tester")]
pub static API_TESTER: Descriptor = Descriptor {
    name: api_tester::NAME,
    description: api_tester::DESCRIPTION,
    input_schema: api_tester::input_schema,
    // Up to ten requests of five seconds each, with expectations: the queue, not a caller's open request.
    long: true,
    limits: Limits { default_timeout_ms: 15_000, max_timeout_ms: 60_000 },
    failures: FAILURES,
};

/// The `webhook` task type.
#[cfg(feature = "webhook")]
pub static WEBHOOK: Descriptor = Descriptor {
    name: webhook::NAME,
    description: webhook::DESCRIPTION,
    input_schema: webhook::input_schema,
    long: false,
    limits: Limits { default_timeout_ms: 8_000, max_timeout_ms: 30_000 },
    failures: FAILURES,
};

/// The `inference` task type.
#[cfg(feature = "inference")]
pub static INFERENCE: Descriptor = Descriptor {
    name: inference::NAME,
    description: inference::DESCRIPTION,
    input_schema: inference::input_schema,
    long: false,
    // At most 50 s: under the worker's and the drain's 60 s, and under the queue's 2-minute lease.
    limits: Limits { default_timeout_ms: 20_000, max_timeout_ms: 50_000 },
    failures: &[
        INPUT_FAILURE,
        TRANSIENT_FAILURE,
        crate::contract::FailureKind {
            kind: "model-unavailable",
            retryable: false,
            when: "no model is configured, its credentials are refused, or it keeps failing (circuit breaker open) \
                   with no cached answer to the same request",
        },
        crate::contract::FailureKind {
            kind: "model-refused",
            retryable: false,
            when: "the model refused the request (a 4xx: too long for its context, an unknown option)",
        },
    ],
};

/// The inference handler with its settings (tests and deployments that configure it in code).
#[cfg(feature = "inference")]
pub fn inference(settings: inference::Settings) -> impl Handler {
    InferenceHandler(inference::Inference::new(settings))
}

#[cfg(feature = "inference")]
struct InferenceHandler(inference::Inference);

#[cfg(feature = "inference")]
#[async_trait::async_trait]
impl Handler for InferenceHandler {
    fn descriptor(&self) -> &'static Descriptor {
        &INFERENCE
    }

    async fn run(&self, cx: &Context, input: Value) -> Result<Value, Failure> {
        self.0.run(cx, &input).await
    }

    fn breakers(&self) -> Vec<std::sync::Arc<cloud_agent_breaker::Breaker>> {
        vec![self.0.breaker()]
    }
}

/// Every built-in compiled in, runnable here (the worker, the drain, `cloudagent serve`).
pub fn register(builder: Builder) -> Builder {
    let builder = short(builder);
    #[cfg(feature = "api-tester")]
    let builder = builder.handler(Builtin { descriptor: &API_TESTER, run: outbound!(api_tester) });
    builder
}

/// For route functions: the built-ins that may run inside a request are runnable; the long ones are described
/// only (listed, validated, queued), so their code is not linked into the function.
pub fn register_for_requests(builder: Builder) -> Builder {
    let builder = short(builder);
    #[cfg(feature = "api-tester")]
    let builder = builder.describe(&API_TESTER);
    builder
}

/// Every built-in as a descriptor only: for functions that list, validate or read tasks but never run one, so
/// no handler's code is linked into them.
pub fn describe(builder: Builder) -> Builder {
    #[cfg(feature = "echo")]
    let builder = builder.describe(&ECHO);
    #[cfg(feature = "data-transform")]
    let builder = builder.describe(&DATA_TRANSFORM);
    #[cfg(feature = "json-validator")]
    let builder = builder.describe(&JSON_VALIDATOR);
    #[cfg(feature = "text-analysis")]
    let builder = builder.describe(&TEXT_ANALYSIS);
    #[cfg(feature = "smart-routing")]
    let builder = builder.describe(&SMART_ROUTING);
    #[cfg(feature = "image-metadata")]
    let builder = builder.describe(&IMAGE_METADATA);
    #[cfg(feature = "file-processing")]
    let builder = builder.describe(&FILE_PROCESSING);
    #[cfg(feature = "health-check")]
    let builder = builder.describe(&HEALTH_CHECK);
    #[cfg(feature = "api-tester")]
    let builder = builder.describe(&API_TESTER);
    #[cfg(feature = "webhook")]
    let builder = builder.describe(&WEBHOOK);
    #[cfg(feature = "inference")]
    let builder = builder.describe(&INFERENCE);
    builder
}

/// The built-ins that may run inside a request.
fn short(builder: Builder) -> Builder {
    #[cfg(feature = "echo")]
    let builder = builder.handler(Builtin { descriptor: &ECHO, run: Run::Echo });
    #[cfg(feature = "data-transform")]
    let builder = builder.handler(Builtin { descriptor: &DATA_TRANSFORM, run: Run::Pure(data_transform::run) });
    #[cfg(feature = "json-validator")]
    let builder = builder.handler(Builtin { descriptor: &JSON_VALIDATOR, run: Run::Pure(json_validator::run) });
    #[cfg(feature = "text-analysis")]
    let builder = builder.handler(Builtin { descriptor: &TEXT_ANALYSIS, run: Run::Pure(text_analysis::run) });
    #[cfg(feature = "smart-routing")]
    let builder = builder.handler(Builtin { descriptor: &SMART_ROUTING, run: Run::Pure(smart_routing::run) });
    #[cfg(feature = "image-metadata")]
    let builder = builder.handler(Builtin { descriptor: &IMAGE_METADATA, run: Run::Pure(image_metadata::run) });
    #[cfg(feature = "file-processing")]
    let builder = builder.handler(Builtin { descriptor: &FILE_PROCESSING, run: Run::Pure(file_processing::run) });
    #[cfg(feature = "health-check")]
    let builder = builder.handler(Builtin { descriptor: &HEALTH_CHECK, run: outbound!(health_check) });
    #[cfg(feature = "webhook")]
    let builder = builder.handler(Builtin { descriptor: &WEBHOOK, run: outbound!(webhook) });
    #[cfg(feature = "inference")]
    let builder = builder.handler(inference(inference::Settings::from_env()));
    builder
}
