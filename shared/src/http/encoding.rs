//! Content codings (RFC 9110 §8.4). A request body may arrive gzip- or brotli-encoded: [`DecodeLayer`] decodes it
//! before any route (or the signature check) reads it, and refuses a body whose *decoded* size passes the body
//! limit — a zip bomb is a 413 after at most `limit + 1` decoded bytes, never a full inflation. Responses are
//! compressed by tower-http's layer ([`compression`]) when the client accepts it and the body is large.

use std::convert::Infallible;
use std::io::Read;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::TryFutureExt;
use futures_util::future::{BoxFuture, Either};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tower::{Layer, Service};
use tower_http::compression::predicate::{NotForContentType, Predicate as _, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

use crate::problem::{ApiError, Problem, ToProblem};

/// What `Accept-Encoding` says to a client whose coding we refused (RFC 9110 §12.5.3).
pub const ACCEPTED: &str = "gzip, br";

/// Responses smaller than this go out as they are: below a kilobyte the header costs more than it saves.
pub const COMPRESS_ABOVE: u16 = 1024;

/// A coding we decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Brotli => "br",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error("Content-Encoding {0:?} is not accepted")]
    Unsupported(String),
    #[error("the decoded body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body is not valid {coding}: {detail}")]
    Corrupt { coding: &'static str, detail: String },
}

impl ToProblem for EncodingError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Corrupt { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::Unsupported(coding) => {
                Problem::new(status, "unsupported-content-encoding", "Unsupported Content-Encoding").detail(format!(
                    "Content-Encoding {coding:?} is not accepted; send the body unencoded, as gzip or as br (one \
                     coding)"
                ))
            }
            Self::TooLarge { limit } => Problem::new(status, "payload-too-large", "Payload Too Large")
                .detail(format!("the decoded body is larger than the {limit}-byte limit; send less in one request")),
            Self::Corrupt { coding, detail } => {
                Problem::new(status, "invalid-content-encoding", "Invalid body encoding").detail(format!(
                    "the body does not decode as {coding} ({detail}); check the Content-Encoding header"
                ))
            }
        }
    }
}

impl EncodingError {
    fn into_response(self) -> Response {
        let unsupported = matches!(self, Self::Unsupported(_));
        let mut response = ApiError::from(self).into_response();
        if unsupported {
            response.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED));
        }
        response
    }
}

/// The request's coding: `None` for an unencoded body (no header, or `identity`).
pub fn coding(headers: &HeaderMap) -> Result<Option<Coding>, EncodingError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if values.next().is_some() || text.contains(',') {
        return Err(EncodingError::Unsupported(text.to_owned()));
    }
    match text.to_ascii_lowercase().as_str() {
        "identity" | "" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
        "br" => Ok(Some(Coding::Brotli)),
        _ => Err(EncodingError::Unsupported(text.to_owned())),
    }
}

/// Decodes `encoded`, reading at most `limit + 1` decoded bytes.
pub fn decode(coding: Coding, encoded: &[u8], limit: usize) -> Result<Vec<u8>, EncodingError> {
    let reader: Box<dyn Read + '_> = match coding {
        // Multi-member: concatenated gzip streams are one body (RFC 1952 §2.2).
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(encoded)),
        Coding::Brotli => Box::new(brotli::Decompressor::new(encoded, 4096)),
    };
    let mut decoded = Vec::with_capacity(encoded.len().saturating_mul(4).min(limit));
    reader
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|e| EncodingError::Corrupt { coding: coding.name(), detail: e.to_string() })?;
    if decoded.len() > limit {
        return Err(EncodingError::TooLarge { limit });
    }
    Ok(decoded)
}

/// Decodes encoded request bodies; unencoded requests pass through without an allocation.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLayer {
    limit: usize,
}

impl DecodeLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DecodeLayer {
    type Service = Decode<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Decode { inner, limit: self.limit }
    }
}

#[derive(Debug, Clone)]
pub struct Decode<S> {
    inner: S,
    limit: usize,
}

/// The inner service's answer, or our problem: an enum body, so passing through costs no boxing.
pub type DecodeResponse<B> = http::Response<http_body_util::Either<B, Body>>;

type Refusal<B> = BoxFuture<'static, Result<DecodeResponse<B>, Infallible>>;

impl<S, B> Service<Request> for Decode<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = DecodeResponse<B>;
    type Error = Infallible;
    type Future =
        Either<futures_util::future::MapOk<S::Future, fn(http::Response<B>) -> DecodeResponse<B>>, Refusal<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let coding = match coding(request.headers()) {
            Ok(None) => return Either::Left(self.inner.call(request).map_ok(passed)),
            Ok(Some(coding)) => coding,
            Err(e) => return Either::Right(Box::pin(std::future::ready(Ok(refused(e.into_response()))))),
        };
        // The clone polled ready is the one that serves (tower's rule); a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Either::Right(Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            // The encoded bytes are capped here, the decoded ones in `decode`.
            let encoded = match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => bytes,
                Err(e) => return Ok(refused(unreadable(&e))),
            };
            let decoded = match decode(coding, &encoded, limit) {
                Ok(decoded) => decoded,
                Err(e) => return Ok(refused(e.into_response())),
            };
            parts.headers.remove(header::CONTENT_ENCODING);
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
            inner.call(Request::from_parts(parts, Body::from(decoded))).await.map(passed)
        }))
    }
}

/// The answer to a body that could not be read: 413 past the limit, else 400 (the client broke off).
fn unreadable(e: &axum::Error) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge.into_response();
        }
        cause = c.source();
    }
    ApiError::InvalidJson { detail: "the request body could not be read".into(), pointer: None }.into_response()
}

fn passed<B>(response: http::Response<B>) -> DecodeResponse<B> {
    response.map(http_body_util::Either::Left)
}

fn refused<B>(response: Response) -> DecodeResponse<B> {
    response.map(http_body_util::Either::Right)
}

/// Response compression: gzip or br as the client's `Accept-Encoding` prefers, for bodies over
/// [`COMPRESS_ABOVE`] bytes; never for event streams (each event must reach the client as it is written) or images.
/// A request that accepts neither passes by tower-http's layer entirely (a header lookup, no body wrapper): most
/// agents' small calls pay nothing for it.
pub fn compression() -> CompressWhenAsked {
    CompressWhenAsked
}

fn tower_compression() -> CompressionLayer<CompressionPredicate> {
    let predicate = SizeAbove::new(COMPRESS_ABOVE)
        .and(NotForContentType::SSE)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::GRPC);
    // Fast levels: a function pays for its CPU time, and JSON compresses well at any level.
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .no_deflate()
        .no_zstd()
        .quality(CompressionLevel::Fastest)
        .compress_when(predicate)
}

/// Whether `Accept-Encoding` names a coding we compress with (`gzip` or `br`, not refused with `q=0`).
fn asks_for_compression(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused =
                parts.any(|p| matches!(p.trim().strip_prefix("q="), Some(q) if q.trim().parse::<f32>() == Ok(0.0)));
            !refused && (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("br") || coding == "*")
        },
    )
}

/// The layer of [`compression`].
#[derive(Debug, Clone, Copy)]
pub struct CompressWhenAsked;

impl<S> Layer<S> for CompressWhenAsked {
    type Service = CompressIfAsked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CompressIfAsked { inner }
    }
}

type Compressing<S> = tower_http::compression::Compression<S, CompressionPredicate>;
type CompressionPredicate = tower_http::compression::predicate::And<
    tower_http::compression::predicate::And<
        tower_http::compression::predicate::And<SizeAbove, NotForContentType>,
        NotForContentType,
    >,
    NotForContentType,
>;

/// One inner service (axum clones the stack for every request: a second copy would be cloned too); tower-http's
/// compression is put around it only for a request that asks.
#[derive(Debug, Clone)]
pub struct CompressIfAsked<S> {
    inner: S,
}

/// As the inner service answered, or compressed: an enum body, no boxing.
pub type MaybeCompressed<B> = http::Response<http_body_util::Either<B, tower_http::compression::CompressionBody<B>>>;

impl<S, B> Service<Request> for CompressIfAsked<S>
where
    S: Service<Request, Response = http::Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: axum::body::HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    type Response = MaybeCompressed<B>;
    type Error = Infallible;
    type Future = Either<
        futures_util::future::MapOk<S::Future, fn(http::Response<B>) -> MaybeCompressed<B>>,
        futures_util::future::MapOk<
            <Compressing<S> as Service<Request>>::Future,
            fn(http::Response<tower_http::compression::CompressionBody<B>>) -> MaybeCompressed<B>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if asks_for_compression(request.headers()) {
            // The service polled ready goes into the compression wrapper (whose readiness is its inner's); a
            // clone takes its place here.
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            Either::Right(tower_compression().layer(ready).call(request).map_ok(compressed as fn(_) -> _))
        } else {
            Either::Left(self.inner.call(request).map_ok(as_is as fn(_) -> _))
        }
    }
}

fn as_is<B: axum::body::HttpBody>(response: http::Response<B>) -> MaybeCompressed<B> {
    response.map(http_body_util::Either::Left)
}

fn compressed<B: axum::body::HttpBody>(
    response: http::Response<tower_http::compression::CompressionBody<B>>,
) -> MaybeCompressed<B> {
    response.map(http_body_util::Either::Right)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decodes_gzip_and_brotli() {
        let body = br#"{"type":"echo","payload":{"message":"hi"}}"#.repeat(50);
        assert_eq!(decode(Coding::Gzip, &gzip(&body), 1 << 20).unwrap(), body);
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22).write_all(&body).unwrap();
        assert_eq!(decode(Coding::Brotli, &br, 1 << 20).unwrap(), body);
    }

    #[test]
    fn stops_a_zip_bomb_at_the_limit() {
        // 64 MiB of zeros in ~64 KiB.
        let bomb = gzip(&vec![0; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert!(
            matches!(decode(Coding::Gzip, &bomb, 1 << 20), Err(EncodingError::TooLarge { limit }) if limit == 1 << 20)
        );
        // Exactly at the limit is fine.
        assert_eq!(decode(Coding::Gzip, &gzip(&[7; 1000]), 1000).unwrap().len(), 1000);
    }

    #[test]
    fn compresses_only_for_clients_that_ask() {
        let asks = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            asks_for_compression(&headers)
        };
        assert!(asks("gzip") && asks("br;q=1.0, gzip;q=0.5") && asks("deflate, GZIP") && asks("*"));
        assert!(!asks("identity") && !asks("gzip;q=0") && !asks("deflate") && !asks("gzip;q=0.0, br;q=0"));
        assert!(!asks_for_compression(&HeaderMap::new()));
    }

    #[test]
    fn names_what_it_refuses() {
        let mut headers = HeaderMap::new();
        assert_eq!(coding(&headers).unwrap(), None);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(coding(&headers).unwrap(), Some(Coding::Gzip));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
        assert!(matches!(coding(&headers), Err(EncodingError::Unsupported(c)) if c == "zstd"));
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip, br"));
        assert!(coding(&headers).is_err());
        assert!(matches!(decode(Coding::Gzip, b"not gzip", 100), Err(EncodingError::Corrupt { coding: "gzip", .. })));
    }
}
