//! Request signing for API keys (per key: off, optional or required), in the manner of AWS SigV4 and Stripe's
//! signatures: HMAC-SHA256 over a canonical string, a timestamp inside an asymmetric window, and each signature
//! usable once.
//!
//! The canonical string is five lines joined by `\n`:
//!
//! ```text
//! METHOD
//! /path
//! sorted query: name=value pairs, percent-decoded, sorted, re-encoded (RFC 3986 unreserved kept), joined by &
//! timestamp (the X-Timestamp header, Unix seconds)
//! lower-case hex SHA-256 of the body (of the empty string when there is none)
//! ```
//!
//! and `X-Signature: v1=<lower-case hex HMAC-SHA256(signing secret, canonical string)>`. The signing secret is
//! issued with the key (shown once, like the key) and derived by the server from the key's id, so the table holds
//! nothing that signs. A client may also send `X-Content-SHA256` (hex SHA-256 of the body): a body changed in
//! transit is then reported as such rather than as a mismatched signature.

use http::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::config::secrets::{Secret, constant_time_eq, hex};
use crate::problem::{Problem, ToProblem};
use crate::store::{Condition, DynStore, EXPIRES_AT, Item, StoreError, keys};

pub const TIMESTAMP_HEADER: &str = "x-timestamp";
pub const SIGNATURE_HEADER: &str = "x-signature";
pub const CONTENT_SHA256_HEADER: &str = "x-content-sha256";
/// Optional: a keyed digest of each part the signature covers, so the server can say which part changed.
pub const PARTS_HEADER: &str = "x-signature-parts";
/// The oldest a signed request may be.
pub const MAX_AGE_SECS: i64 = 300;
/// How far a timestamp may run ahead of the server's clock (clock skew), much less than the age allowed.
pub const MAX_SKEW_SECS: i64 = 30;

/// Why a signed request was refused: one problem type each, so a client can tell what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("this key requires signed requests")]
    Missing,
    #[error("malformed signature headers: {0}")]
    Malformed(&'static str),
    #[error("the timestamp is older than {MAX_AGE_SECS} s")]
    Stale,
    #[error("the timestamp is more than {MAX_SKEW_SECS} s in the future")]
    Future,
    #[error("the body does not match X-Content-SHA256")]
    BodyDigest,
    #[error("the signature does not match the request")]
    Mismatch { canonical: String },
    #[error("the request's {0} changed after it was signed")]
    PartChanged(&'static str),
    #[error("this signature was already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ToProblem for SigningError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Store(e) => e.status(),
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        let p = |slug: &str, title: &str, detail: String| Problem::new(status, slug, title).detail(detail);
        match self {
            Self::Missing => p(
                "signature-required",
                "Signature required",
                "this key requires signed requests: send X-Timestamp and X-Signature (see the README)".into(),
            ),
            Self::Malformed(what) => p("signature-malformed", "Malformed signature", (*what).to_owned()),
            Self::Stale => p(
                "signature-expired",
                "Signature too old",
                format!("X-Timestamp is more than {MAX_AGE_SECS} s old; sign the request again with the current time"),
            ),
            Self::Future => p(
                "signature-from-the-future",
                "Signature from the future",
                format!("X-Timestamp is more than {MAX_SKEW_SECS} s ahead of the server's clock; check your clock"),
            ),
            Self::BodyDigest => p(
                "body-digest-mismatch",
                "Body changed",
                "the body's SHA-256 differs from X-Content-SHA256: the body was changed after signing".into(),
            ),
            Self::Mismatch { canonical } => p(
                "signature-mismatch",
                "Signature mismatch",
                format!(
                    "the signature does not match this request (method, path, query or body changed, or the wrong \
                     signing secret); the server signed this canonical string: {canonical:?}"
                ),
            ),
            Self::PartChanged(part) => {
                let slug = match *part {
                    "method" => "signature-method-mismatch",
                    "path" => "signature-path-mismatch",
                    _ => "signature-query-mismatch",
                };
                p(slug, "Signed request changed", format!("the request's {part} is not the one that was signed"))
            }
            Self::Replayed => p(
                "signature-replayed",
                "Signature replayed",
                "this signature was already used; sign each request anew (new timestamp)".into(),
            ),
            Self::Store(e) => e.problem(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode(text: &str) -> String {
    text.bytes().fold(String::with_capacity(text.len()), |mut out, b| {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
        out
    })
}

/// The query in canonical form: pairs decoded, sorted, re-encoded.
pub fn canonical_query(query: Option<&str>) -> String {
    // form_urlencoded decodes as browsers and servers do (`+` is a space, a bad escape stays as it is).
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(name, value)| (encode(&name), encode(&value)))
        .collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The string a request's signature covers.
pub fn canonical_string(method: &Method, path: &str, query: Option<&str>, timestamp: &str, body: &[u8]) -> String {
    format!("{}\n{path}\n{}\n{timestamp}\n{}", method.as_str(), canonical_query(query), sha256_hex(body))
}

/// `v1=<hex>` for `canonical` under `secret`.
pub fn sign(secret: &[u8], canonical: &str) -> String {
    format!("v1={}", hex(&Secret::new(secret.to_vec()).mac(canonical.as_bytes())))
}

/// `X-Signature-Parts`: for each covered part, the first 16 hex digits of HMAC-SHA256(secret, "<part>\n<value>")
/// (values: the method, the path, the canonical query, the body's hex SHA-256). Keyed, so it reveals nothing and
/// cannot be forged; it only lets the server name the part that changed.
pub fn parts_header(secret: &[u8], method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> String {
    let key = Secret::new(secret.to_vec());
    let part = |name: &str, value: &str| hex(&key.mac(format!("{name}\n{value}").as_bytes())[..8]);
    format!(
        "method={},path={},query={},body={}",
        part("method", method.as_str()),
        part("path", path),
        part("query", &canonical_query(query)),
        part("body", &sha256_hex(body))
    )
}

/// The first part whose keyed digest the client sent differs from this request's.
fn changed_part(presented: &str, expected: &str) -> Option<&'static str> {
    let field = |text: &str, name: &str| {
        text.split(',').find_map(|p| p.trim().strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
    };
    ["method", "path", "query", "body"].into_iter().find(|name| {
        let (got, want) = (field(presented, name), field(expected, name));
        got.is_some() && !constant_time_eq(got.unwrap_or_default().as_bytes(), want.unwrap_or_default().as_bytes())
    })
}

/// The signature headers of a request, if it carries any.
#[derive(Debug, Clone)]
pub struct Presented {
    pub timestamp: String,
    pub signature: String,
    pub content_sha256: Option<String>,
    pub parts: Option<String>,
}

impl Presented {
    /// `None` when the request carries neither header; an error when it carries only one, or a bad one.
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Option<Self>, SigningError> {
        let text = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
        match (text(TIMESTAMP_HEADER), text(SIGNATURE_HEADER)) {
            (None, None) => Ok(None),
            (Some(Ok(timestamp)), Some(Ok(signature))) => {
                if timestamp.is_empty() || timestamp.len() > 12 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SigningError::Malformed("X-Timestamp must be Unix seconds"));
                }
                if !signature.starts_with("v1=") || signature.len() != 3 + 64 {
                    return Err(SigningError::Malformed("X-Signature must be v1=<64 hex digits>"));
                }
                let content_sha256 = match text(CONTENT_SHA256_HEADER) {
                    None => None,
                    Some(Ok(d)) if d.len() == 64 => Some(d.to_ascii_lowercase()),
                    Some(_) => return Err(SigningError::Malformed("X-Content-SHA256 must be 64 hex digits")),
                };
                let parts = match text(PARTS_HEADER) {
                    None => None,
                    Some(Ok(p)) if p.len() <= 256 => Some(p.to_ascii_lowercase()),
                    Some(_) => return Err(SigningError::Malformed("X-Signature-Parts is malformed")),
                };
                Ok(Some(Self {
                    timestamp: timestamp.to_owned(),
                    signature: signature.to_ascii_lowercase(),
                    content_sha256,
                    parts,
                }))
            }
            _ => Err(SigningError::Malformed("send both X-Timestamp and X-Signature")),
        }
    }
}

/// Checks a signed request: freshness, body digest, signature (constant time), then records the signature so a
/// second use fails (one conditional put; the record outlives the window in which the signature could pass).
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    store: &DynStore,
    key_id: &str,
    secret: &[u8],
    presented: &Presented,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SigningError> {
    let timestamp: i64 = presented.timestamp.parse().map_err(|_| SigningError::Malformed("X-Timestamp"))?;
    if timestamp < now - MAX_AGE_SECS {
        return Err(SigningError::Stale);
    }
    if timestamp > now + MAX_SKEW_SECS {
        return Err(SigningError::Future);
    }
    if let Some(claimed) = &presented.content_sha256
        && *claimed != sha256_hex(body)
    {
        return Err(SigningError::BodyDigest);
    }
    let canonical = canonical_string(method, path, query, &presented.timestamp, body);
    let expected = sign(secret, &canonical);
    if !constant_time_eq(expected.as_bytes(), presented.signature.as_bytes()) {
        if let Some(parts) = &presented.parts {
            match changed_part(parts, &parts_header(secret, method, path, query, body)) {
                Some("body") => return Err(SigningError::BodyDigest),
                Some(part) => return Err(SigningError::PartChanged(part)),
                None => {}
            }
        }
        return Err(SigningError::Mismatch { canonical });
    }
    let seen = Item::new(&keys::signature_seen(key_id, &presented.signature[3..]))
        .with(EXPIRES_AT, timestamp + MAX_AGE_SECS + MAX_SKEW_SECS + 60);
    match store.put(seen, Some(Condition::NotExists)).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed { .. }) => Err(SigningError::Replayed),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_decoded_sorted_and_reencoded() {
        assert_eq!(canonical_query(Some("b=2&a=x%20y&a=1&c")), "a=1&a=x%20y&b=2&c=");
        assert_eq!(canonical_query(Some("q=a+b&z=%7e")), "q=a%20b&z=~");
        assert_eq!(canonical_query(None), "");
    }

    /// The README's worked example, which a reader recomputes with openssl.
    #[test]
    fn the_readme_example_signs_as_documented() {
        let body = br#"{"name":"ci","role":"viewer"}"#;
        let c = canonical_string(&Method::POST, "/api/v1/keys", Some("b=2&a=1"), "1764000000", body);
        assert_eq!(
            c,
            "POST\n/api/v1/keys\na=1&b=2\n1764000000\na4a1845e95ce29fdf3ef70aa9920ba101f86149f27094a0a9c5f8e70789d43bc"
        );
        assert_eq!(
            sign(b"ca_sig_EXAMPLEexampleEXAMPLEexample", &c),
            "v1=bb9fe7059c25bb689f791a17da838b8b0f4cb3ce9d89209d12563ca83a39a751"
        );
    }

    #[test]
    fn the_canonical_string_has_five_lines() {
        let c = canonical_string(&Method::POST, "/api/v1/keys", Some("b=1&a=2"), "1700000000", b"{}");
        assert_eq!(
            c,
            "POST\n/api/v1/keys\na=2&b=1\n1700000000\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(sign(b"k", &c).len(), 67);
    }
}
