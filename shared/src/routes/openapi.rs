//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::response::{IntoResponse, Response};
use http::header;
use once_cell::sync::Lazy;
use utoipa::OpenApi;

use crate::http::Problem;
use crate::routes::health::{Check, HealthReport, HealthStatus};

#[derive(OpenApi)]
#[openapi(
    info(title = "Cloud Agent", description = "Control plane for fleets of software agents."),
    paths(
        crate::routes::health::health,
        spec,
        crate::routes::token::token,
        crate::routes::token::refresh,
        crate::routes::token::revoke,
        crate::routes::token::me,
        crate::routes::progress::post,
        crate::routes::progress::get,
        crate::routes::context::get,
        crate::routes::admin::put_context,
        crate::routes::breakers::list,
        crate::routes::metrics::prometheus,
        crate::routes::health::live,
        crate::routes::health::ready,
        crate::routes::agent_health::post,
        crate::routes::agent_health::list
    ),
    components(schemas(
        Problem,
        HealthReport,
        Check,
        HealthStatus,
        crate::token::family::Issued,
        crate::routes::token::TokenRequest,
        crate::routes::token::RefreshRequest,
        crate::routes::token::RevokeRequest,
        crate::routes::token::Me,
        crate::routes::progress::ProgressBatch,
        crate::progress::ProgressUpdate,
        crate::progress::TaskStatus,
        crate::progress::Receipt,
        crate::progress::ItemIssue,
        crate::progress::TaskProgress,
        crate::progress::ProgressEvent,
        crate::routes::context::ContextResponse,
        crate::context::StoredContext,
        crate::context::UserContext,
        crate::cache::CacheStatus,
        crate::routes::admin::ContextStored,
        crate::routes::breakers::Breakers,
        crate::routes::agent_health::AgentStatus,
        crate::routes::agent_health::AgentCheck,
        crate::routes::agent_health::AgentReport,
        crate::routes::agent_health::AgentHealth,
        crate::routes::agent_health::HealthSection,
        crate::routes::agent_health::Performance,
        crate::routes::agent_health::Reported,
        crate::routes::agent_health::AgentHealthList
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Health, metrics and the API description"),
        (name = "agent", description = "Agent identity, progress and context"),
        (name = "admin", description = "Operator routes (admin key)")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Declares the bearer scheme agent routes require.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Rendered once per instance: the document cannot change while the process runs.
/// (once_cell is the design card's choice for process-wide statics.)
#[allow(clippy::non_std_lazy_statics)]
static DOCUMENT: Lazy<String> = Lazy::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default());

/// The document as JSON text.
pub fn document() -> &'static str {
    &DOCUMENT
}

/// This API, described in OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "platform",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn spec() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
