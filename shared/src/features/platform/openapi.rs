//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::response::{IntoResponse, Response};
use http::header;
use once_cell::sync::Lazy;
use utoipa::OpenApi;

use crate::http::Problem;

/// What belongs to no single feature: the document's info, the problem schema, the security scheme and the
/// tags. Each feature adds its own paths and schemas ([`crate::route::Feature::openapi`]).
#[derive(OpenApi)]
#[openapi(
    info(title = "Cloud Agent", description = "Control plane for fleets of software agents."),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Health, metrics and the API description"),
        (name = "agent", description = "Agent identity, progress and context"),
        (name = "admin", description = "Operator routes (admin key)")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The whole document: the base merged with every feature's part.
pub fn build() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for feature in crate::app::FEATURES {
        doc.merge((feature.openapi)());
    }
    doc
}

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
static DOCUMENT: Lazy<String> = Lazy::new(|| build().to_pretty_json().unwrap_or_default());

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
