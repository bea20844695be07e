//! Step 3: the signature of a request made with a key whose signing is on (`crate::auth::signing`). A failed
//! signature is a failed authentication: it counts against the address and is audited.

use axum::extract::Request;

use super::PerimeterState;
use crate::auth::api_key::Signing;
use crate::auth::signing::{self, SigningError};
use crate::auth::{Operator, Principal, Via};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::StoreError;

/// Checks the request's signature; returns the request with its body restored (it had to be read to be hashed).
/// Keys with signing off, agents, users and the bootstrap key pass as they are.
pub async fn check(
    state: &AppState,
    perimeter: &PerimeterState,
    principal: &Principal,
    request: Request,
) -> Result<Request, ApiError> {
    let Principal::Operator(Operator { via: Via::Key(key), .. }) = principal else { return Ok(request) };
    if key.signing == Signing::Off {
        return Ok(request);
    }
    let Some(presented) = signing::Presented::from_headers(request.headers())? else {
        return if key.signing == Signing::Required { Err(SigningError::Missing.into()) } else { Ok(request) };
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.config().body_limit).await.map_err(|_| ApiError::PayloadTooLarge)?;
    let secret = perimeter.hasher.signing_secret(&key.id);
    let verified = signing::verify(
        state.store(),
        key.id.as_str(),
        secret.expose().as_bytes(),
        &presented,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &bytes,
        crate::store::now_epoch(),
    );
    match tokio::time::timeout(state.config().perimeter_budget, verified).await {
        Ok(Ok(())) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(StoreError::Unavailable("the replay check ran out of time".into()).into()),
    }
}
