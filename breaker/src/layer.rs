//! The breaker as a tower layer (feature `tower`).

use std::future::Future;
use std::time::Duration;

use super::Breaker;

/// The error a [`BreakerLayer`] service returns when its breaker is open.
#[derive(Debug, thiserror::Error)]
#[error("circuit {name} open; retry after {retry_after:?}")]
pub struct OpenError {
    pub name: String,
    pub retry_after: Duration,
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The breaker as a tower layer, for outbound clients built as services: the wrapped service's errors are
/// judged by `counts`; while open, calls fail with [`OpenError`] without reaching the service.
#[derive(Clone)]
pub struct BreakerLayer {
    breaker: std::sync::Arc<Breaker>,
    counts: std::sync::Arc<dyn Fn(&BoxError) -> bool + Send + Sync>,
}

impl std::fmt::Debug for BreakerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerLayer").field("breaker", &self.breaker.name).finish_non_exhaustive()
    }
}

impl BreakerLayer {
    pub fn new(breaker: std::sync::Arc<Breaker>, counts: impl Fn(&BoxError) -> bool + Send + Sync + 'static) -> Self {
        Self { breaker, counts: std::sync::Arc::new(counts) }
    }
}

impl<S> tower::Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BreakerService { inner, layer: self.clone() }
    }
}

/// A service behind a breaker (see [`BreakerLayer`]).
#[derive(Clone, Debug)]
pub struct BreakerService<S> {
    inner: S,
    layer: BreakerLayer,
}

impl<S, Req> tower::Service<Req> for BreakerService<S>
where
    S: tower::Service<Req>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let counts = self.layer.counts.clone();
        // The permit moves into the future: dropping the future unfinished reports the call as cancelled.
        let permit = match Breaker::try_acquire(self.layer.breaker.clone()) {
            Ok(permit) => permit,
            Err(retry_after) => {
                let name = self.layer.breaker.name.clone();
                return Box::pin(async move { Err(Box::new(OpenError { name, retry_after }) as BoxError) });
            }
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await.map_err(Into::into);
            permit.report(result.as_ref().err().is_some_and(|e| counts(e)));
            result
        })
    }
}
