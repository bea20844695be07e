//! Content codings (RFC 9110 §8.4). A request body may arrive gzip- or brotli-encoded: [`decode_request`] decodes it
//! before any route (or the signature check) reads it, and refuses a body whose *decoded* size passes the body
//! limit — a zip bomb is a 413 after at most `limit + 1` decoded bytes, never a full inflation. Large responses are
//! compressed ([`compress`]) when the client accepts it. Both run in the one request layer
//! ([`super::request_id::request_context`]): a request that neither sends nor accepts a coding pays two header
//! lookups and nothing else — no layer, no future or body wrapper.

use std::io::Read;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

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

/// The request with its body decoded, or the problem that refuses it. An unencoded request (the common case) is
/// handed back as it came, after one header lookup. The encoded bytes are capped at `limit`, the decoded ones in
/// [`decode`]; the decoded body then meets the body limit like any other.
pub async fn decode_request(request: Request, limit: usize) -> Result<Request, Response> {
    let coding = match coding(request.headers()) {
        Ok(None) => return Ok(request),
        Ok(Some(coding)) => coding,
        Err(e) => return Err(e.into_response()),
    };
    let (mut parts, body) = request.into_parts();
    let encoded = axum::body::to_bytes(body, limit).await.map_err(|e| unreadable(&e))?;
    let decoded = decode(coding, &encoded, limit).map_err(EncodingError::into_response)?;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
    Ok(Request::from_parts(parts, Body::from(decoded)))
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

/// The coding to answer in: the one of `gzip` and `br` that `Accept-Encoding` ranks highest (gzip on a tie: every
/// client decodes it), `None` when it names neither or refuses both with `q=0`.
pub fn accepted(headers: &HeaderMap) -> Option<Coding> {
    // (coding, q in thousandths: RFC 9110 §12.4.2 allows three decimals, so integers compare exactly).
    let mut best: Option<(Coding, u16)> = None;
    let items =
        headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(1000, |q| q.trim().parse::<f32>().map_or(0, |q| (q.clamp(0.0, 1.0) * 1000.0).round() as u16));
        let coding = if name.eq_ignore_ascii_case("gzip") || name == "*" {
            Coding::Gzip
        } else if name.eq_ignore_ascii_case("br") {
            Coding::Brotli
        } else {
            continue;
        };
        let better = best.is_none_or(|(held, best_q)| q > best_q || (q == best_q && held == Coding::Brotli));
        if q > 0 && better {
            best = Some((coding, q));
        }
    }
    best.map(|(coding, _)| coding)
}

/// Compresses a response of more than [`COMPRESS_ABOVE`] bytes in `coding`. Only a body of known size is
/// compressed (every JSON answer: it is already in memory), never an event stream (each event must reach the
/// client as it is written), an image or one a handler encoded itself.
pub async fn compress(response: Response, coding: Coding) -> Response {
    if !compressible(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The size is known and the bytes are in memory: collecting them is one poll.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let encoded = match encode(coding, &bytes) {
        Ok(encoded) if encoded.len() < bytes.len() => encoded,
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    parts.headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(encoded))
}

fn compressible(response: &Response) -> bool {
    use axum::body::HttpBody as _;
    let large = response.body().size_hint().exact().is_some_and(|n| n > u64::from(COMPRESS_ABOVE));
    let headers = response.headers();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    large
        && !headers.contains_key(header::CONTENT_ENCODING)
        && !content_type.starts_with("text/event-stream")
        && !content_type.starts_with("image/")
}

/// Fast levels: a function pays for its CPU time, and JSON compresses well at any level.
fn encode(coding: Coding, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    match coding {
        Coding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
            encoder.write_all(bytes)?;
            encoder.finish()
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(bytes.len() / 4);
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
                writer.write_all(bytes)?;
            }
            Ok(out)
        }
    }
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
    fn answers_in_the_coding_the_client_ranks_highest() {
        let asks = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            accepted(&headers)
        };
        assert_eq!(asks("gzip"), Some(Coding::Gzip));
        assert_eq!(asks("deflate, GZIP"), Some(Coding::Gzip));
        assert_eq!(asks("*"), Some(Coding::Gzip));
        assert_eq!(asks("br, gzip"), Some(Coding::Gzip), "a tie goes to gzip");
        assert_eq!(asks("br;q=1.0, gzip;q=0.5"), Some(Coding::Brotli));
        assert_eq!(asks("gzip;q=0, br"), Some(Coding::Brotli));
        for none in ["identity", "gzip;q=0", "deflate", "gzip;q=0.0, br;q=0", "gzip;q=bad"] {
            assert_eq!(asks(none), None, "{none}");
        }
        assert_eq!(accepted(&HeaderMap::new()), None);
    }

    #[test]
    fn encodes_what_decode_reads_back() {
        let body = br#"{"id":"t-1","state":"done"}"#.repeat(100);
        for coding in [Coding::Gzip, Coding::Brotli] {
            let encoded = encode(coding, &body).unwrap();
            assert!(encoded.len() < body.len() / 4, "{coding:?}: {} bytes", encoded.len());
            assert_eq!(decode(coding, &encoded, body.len()).unwrap(), body);
        }
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
