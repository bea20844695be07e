//! The OpenAPI 3.1 document, assembled from the features' own parts and the layers their route specs declare.
//! (Served by `GET /api/v1/openapi.json`, which the root mounts: only the openapi function carries the document.)

use utoipa::OpenApi;

use crate::problem::Problem;
use crate::route::Feature;

/// What belongs to no single feature: the document's info, the problem schema, the security scheme and the
/// tags. Each feature adds its own paths and schemas ([`crate::route::Feature::openapi`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cloud Agent",
        description = "Control plane for fleets of software agents.\n\n**Compression.** A request body may be sent \
                       with `Content-Encoding: gzip` or `br`; the body limit applies to its encoded and its decoded \
                       size (a body that decodes past it is a 413 problem), an unknown coding is a 415 problem \
                       naming the accepted ones in `Accept-Encoding`, and a request signature covers the decoded \
                       body. Responses over 1 KiB are compressed (gzip or br) when the request's `Accept-Encoding` \
                       allows it; event streams never are."
    ),
    // Relative: the deployment that serves the document (a Lambda URL, a Vercel domain, `cloudagent serve`).
    servers((url = "/", description = "The deployment serving this document")),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Health, metrics and the API description"),
        (name = "agent", description = "Agent identity, progress and context"),
        (name = "admin", description = "Operator routes (API keys with roles, or the bootstrap admin key)")
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The whole document: the base merged with each feature's part, then what the routes' layers answer.
pub fn build(features: &[Feature]) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for feature in features {
        doc.merge((feature.openapi)());
    }
    for route in features.iter().flat_map(|f| f.routes) {
        for method in route.methods {
            if let Some(operation) = doc.paths.paths.get_mut(route.path).and_then(|item| operation(item, method)) {
                layered_responses(operation, route, method);
            }
        }
    }
    doc
}

fn operation<'a>(
    item: &'a mut utoipa::openapi::PathItem,
    method: &crate::route::Method,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    use crate::route::Method as M;
    match *method {
        M::GET => item.get.as_mut(),
        M::POST => item.post.as_mut(),
        M::PUT => item.put.as_mut(),
        M::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

/// Cross-cutting concerns are layers declared on the route spec, so their answers are documented from it too:
/// the security schemes and 401/403/429 of its perimeter, 400/413/415 of a body, and the 500
/// and 503 (request budget, open breaker) any route can answer. A feature documents only its own statuses.
fn layered_responses(
    operation: &mut utoipa::openapi::path::Operation,
    route: &crate::route::RouteSpec,
    method: &crate::route::Method,
) {
    use crate::route::Method;
    use utoipa::openapi::security::SecurityRequirement;
    let mut add = |status: &str, description: &str| {
        let problem = utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                crate::problem::PROBLEM_JSON,
                utoipa::openapi::content::Content::new(Some(utoipa::openapi::Ref::from_schema_name("Problem"))),
            )
            .build();
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| problem.into());
    };
    if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        add(
            "400",
            "Malformed body (`pointer` names the field), or a body that does not decode as its Content-Encoding",
        );
        add("413", "Body larger than the configured limit, encoded or decoded (Content-Encoding gzip or br)");
        add("415", "Unsupported Content-Type, or a Content-Encoding other than gzip or br (see Accept-Encoding)");
    }
    let permission = route.access.permission_for(method);
    if let Some(permission) = permission {
        add("401", "Missing, invalid or expired credential (see WWW-Authenticate)");
        add(
            "403",
            "The caller lacks the permission this route needs (see the README's permission table), or the network \
             rules refuse the client",
        );
        add("429", "Over the caller's rate limit; see Retry-After and the RateLimit fields");
        let needs = format!("Requires the permission `{permission}`.");
        operation.description = Some(match operation.description.take() {
            Some(text) if !text.is_empty() => format!("{text}\n\n{needs}"),
            _ => needs,
        });
    }
    if route.access == crate::route::Access::Scheduler {
        add("401", "Not the scheduler: the bearer token is not the configured CRON_SECRET");
    }
    if route.access == crate::route::Access::Credential {
        add("429", "Too many requests from this address; see Retry-After and the RateLimit fields");
    }
    add("403", "The deployment's network rules refuse the client's address or country (ip-denied, country-denied)");
    add("500", "Internal error; quote the request_id");
    add("503", "Datastore unavailable or the request budget ran out; see Retry-After");
    // Agent routes take the agent's access token; operator routes an API key (in either header) or the
    // bootstrap admin key.
    let schemes: &[&str] = match permission {
        None if route.access == crate::route::Access::Scheduler => &["cronBearer"],
        None => &[],
        Some(p) if p.is_agent_only() => &["bearer"],
        Some(_) => &["apiKey", "operatorBearer"],
    };
    // An empty list says "no credential" explicitly; an absent one would leave a reader (and a linter) guessing.
    operation.security = Some(schemes.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());
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
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-API-Key",
                    "An operator's API key (ca_live_… in production, ca_test_… elsewhere), or the bootstrap admin key",
                ),
            )),
        );
        components.add_security_scheme(
            "cronBearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The platform scheduler's secret (CRON_SECRET), which Vercel cron sends"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operatorBearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator's API key, a token from the configured identity provider (OIDC; RS256 or ES256, \
                         role from a claim), or the environment's bootstrap admin key (<ENV>_ADMIN_KEY), as a bearer \
                         token",
                    ))
                    .build(),
            ),
        );
    }
}

/// A string of 1 to `len_max` characters.
fn bounded_string(len_max: usize) -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(len_max))
}

/// The schema of a list of at most `max` strings of 1 to `len_max` characters. For `#[schema(schema_with = ..)]`.
pub fn bounded_strings(max: usize, len_max: usize) -> utoipa::openapi::Array {
    utoipa::openapi::ArrayBuilder::new().items(bounded_string(len_max)).max_items(Some(max)).build()
}

/// The schema of a JSON object used as a map (which utoipa's derive cannot bound): at most `max` entries, names
/// of 1 to `name_max` characters, values of the `values` schema. For `#[schema(schema_with = ..)]`.
pub fn bounded_map(
    max: usize,
    name_max: usize,
    values: impl Into<utoipa::openapi::RefOr<utoipa::openapi::Schema>>,
) -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(max))
        .property_names(Some(bounded_string(name_max)))
        .additional_properties(Some(values.into()))
        .build()
}
