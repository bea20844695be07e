//! Step 4: what the principal may do on this route. Every method is decided here, before any handler or
//! extractor runs: HEAD is a GET without a body, so it needs GET's permission and passes the whole perimeter; a
//! method the route serves without a declared permission is refused 405 with `Allow` (a route spec that forgot a
//! method must not open it). Then a key limited to address blocks works only from them, and the principal's role
//! must grant the permission.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::{Gate, Seen, refusal};
use crate::auth::{AuthError, Operator, Permission, Principal, Via};
use crate::config::network::{Cidr, Refusal};
use crate::http::network::Refused;

/// The permission the request's method needs on this route; HEAD needs GET's.
pub fn permission_for(gate: &Gate, method: &Method) -> Option<Permission> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    gate.access.permission_for(method)
}

/// The methods the route answers, as `Allow` lists them (HEAD beside GET).
pub fn allow(methods: &[Method]) -> String {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
        names.push("HEAD");
    }
    names.join(", ")
}

/// The permission the request needs, once the principal is found to hold it; otherwise the refusal.
/// The refusal is boxed: it is the rare path, and a bare `Response` would make every `Result` as large.
pub fn decide(gate: &Gate, principal: &Principal, seen: &Seen) -> Result<Permission, Box<Response>> {
    let Some(permission) = permission_for(gate, &seen.method) else {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        if let Ok(value) = HeaderValue::from_str(&allow(gate.methods)) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        return Err(Box::new(response));
    };
    if let Principal::Operator(Operator { via: Via::Key(key), .. }) = principal
        && !key.allowed_cidrs.is_empty()
        && !seen
            .client
            .ip
            .is_some_and(|ip| key.allowed_cidrs.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip)))
    {
        return Err(Box::new(refusal(Refused(Refusal::Address))));
    }
    if !principal.allows(permission) {
        return Err(Box::new(refusal(AuthError::Forbidden {
            needed: permission,
            role: principal.role_name(),
            actor: principal.actor(),
        })));
    }
    Ok(permission)
}
