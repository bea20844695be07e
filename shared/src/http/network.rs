//! The network rules' layer: mounted on every route when any rule is configured (and not at all otherwise, so a
//! deployment without rules pays nothing). The client's address and country are what the platform vouches for
//! ([`super::client`]), never a header the client set.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::config::network::{NetworkRules, Refusal, Vantage};
use crate::problem::{ApiError, Problem, ToProblem};

/// What the layer needs: the rules and where it runs (which decides how the client is found).
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Arc<NetworkRules>,
    pub vantage: Vantage,
}

/// A client the rules turn away.
#[derive(Debug, thiserror::Error)]
#[error("refused by the network rules ({0:?})")]
pub struct Refused(pub Refusal);

impl ToProblem for Refused {
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }

    fn problem(&self) -> Problem {
        match self.0 {
            Refusal::Address => Problem::new(self.status(), "ip-denied", "Address not allowed")
                .detail("requests from this address are not accepted by this deployment"),
            Refusal::Country => Problem::new(self.status(), "country-denied", "Country not allowed")
                .detail("requests from this country are not accepted by this deployment"),
        }
    }
}

pub async fn enforce(State(rules): State<Rules>, request: Request, next: Next) -> Response {
    let client = super::client::resolve(rules.vantage, request.extensions(), request.headers());
    match rules.rules.check(client.ip, client.country.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::info!(ip = ?client.ip, country = client.country.as_deref(), "refused by the network rules");
            ApiError::from(Refused(refusal)).into_response()
        }
    }
}
