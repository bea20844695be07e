//! Entry points. A function binary calls [`run_function`]; `cloudagent serve` calls [`crate::app::serve`]. Both
//! run the same router with the same layers; only the transport differs.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Platform, StoreSettings};
use crate::route::RouteSpec;
use crate::router::{Paths, router};
use crate::state::AppState;
use crate::store::probe_key;
use crate::telemetry;

/// Runs a per-route function under whichever platform started it: Vercel (`VERCEL_IPC_PATH`), then AWS
/// Lambda (`AWS_LAMBDA_RUNTIME_API`). Anywhere else it refuses, pointing at `cloudagent serve`.
pub fn run_function(routes: &[RouteSpec]) -> ExitCode {
    run_function_with(routes, |state| state)
}

/// [`run_function`], with what the binary supplies to the state at start (`provide`: the task types it links).
pub fn run_function_with(routes: &[RouteSpec], provide: impl FnOnce(AppState) -> AppState) -> ExitCode {
    telemetry::init();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let platform = Platform::detect(&env);
    let name = routes.first().map_or("function", |r| r.binary);
    if platform == Platform::Local {
        eprintln!(
            "{name}: this is a serverless function for AWS Lambda or Vercel (neither AWS_LAMBDA_RUNTIME_API nor \
             VERCEL_IPC_PATH is set).\nTo run Cloud Agent locally, use `cloudagent serve` (all routes on one port)."
        );
        return ExitCode::from(2);
    }
    // Lambda sends one event at a time per instance: a single thread is enough and starts faster.
    // A Vercel instance may serve concurrent requests, so it gets the multi-threaded runtime.
    let runtime = match platform {
        Platform::Lambda => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let state = match init_state().await {
            Ok(state) => provide(state),
            Err(message) => {
                tracing::error!(function = name, %message, "start-up failed");
                eprintln!("{name}: {message}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            function = name,
            platform = platform.as_str(),
            environment = state.config().environment.as_str(),
            store = state.store().backend(),
            "function started"
        );
        let router = router(state, routes, Paths::WithFunctionPaths);
        let outcome = match platform {
            Platform::Vercel => {
                let inner =
                    tower::ServiceBuilder::new().layer(vercel_runtime::axum::VercelLayer::new()).service(router);
                // The layer drops Vercel's per-request state; handlers reach its `waitUntil` through this extension.
                let service = tower::service_fn(
                    move |(state, mut request): (vercel_runtime::AppState, vercel_runtime::Request)| {
                        request.extensions_mut().insert(AfterResponse(state.clone()));
                        tower::ServiceExt::oneshot(inner.clone(), (state, request))
                    },
                );
                vercel_runtime::run(service).await.map_err(|e| e.to_string())
            }
            _ => lambda_http::run(router).await.map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(function = name, error = %e, "runtime stopped");
                ExitCode::FAILURE
            }
        }
    })
}

/// Work the platform runs after the response is sent, keeping the invocation open for it: Vercel's `waitUntil`
/// (bounded by the function's `maxDuration`). A request extension present only on Vercel: Lambda freezes an
/// instance once it has answered, and the local server has its own worker.
#[derive(Clone)]
pub struct AfterResponse(vercel_runtime::AppState);

impl std::fmt::Debug for AfterResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterResponse")
    }
}

impl AfterResponse {
    /// Runs `work` after the response; the caller bounds how long it takes.
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.wait_until(work);
    }
}

/// The instance's state from the environment's configuration (and the store's warm-up on DynamoDB).
pub async fn init_state() -> Result<AppState, String> {
    let config = Config::from_env().map_err(|e| format!("invalid configuration: {e}"))?;
    let warm_up = matches!(config.store, StoreSettings::DynamoDb(_))
        && std::env::var("CLOUD_AGENT_WARMUP").map_or(true, |v| v != "0");
    let state = AppState::from_config(config).await.map_err(|e| format!("cannot open the store: {e}"))?;
    if warm_up {
        // The first DynamoDB call pays DNS + TLS set-up; do it during init rather than on a caller's request.
        let _ = tokio::time::timeout(Duration::from_millis(1500), state.store().get(&probe_key())).await;
    }
    Ok(state)
}

/// Resolves on Ctrl-C or SIGTERM: the local server's cue to drain in-flight requests and stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
