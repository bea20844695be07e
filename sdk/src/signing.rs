//! Request signing for API keys whose signing is on: the client half of the server's check
//! (`shared/src/auth/signing.rs`; the README shows the canonical string). Written again here rather than shared,
//! because the SDK must not depend on the server; `tests/perimeter.rs` sends requests this signer signed through
//! the server's check, so the two cannot drift apart.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::secret::AgentSecret;

/// Signs requests with an API key's signing secret (`ca_sig_…`).
#[derive(Debug, Clone)]
pub struct RequestSigner {
    secret: AgentSecret,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len()), |mut out, &b| {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

fn decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()));
        if let Some(Some(b)) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The query in canonical form: pairs decoded, sorted, re-encoded.
pub fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let text = |part: &str| String::from_utf8_lossy(&decode(part)).into_owned();
            (encode(text(name).as_bytes()), encode(text(value).as_bytes()))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

impl RequestSigner {
    pub fn new(secret: impl Into<String>) -> Self {
        Self { secret: AgentSecret::new(secret.into()) }
    }

    /// The headers of a signed request at `timestamp` (Unix seconds): `X-Timestamp`, `X-Signature`,
    /// `X-Content-SHA256` and `X-Signature-Parts` (so the server can name the part that changed in transit).
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        timestamp: i64,
    ) -> [(&'static str, String); 4] {
        let digest = hex(&Sha256::digest(body));
        let query = canonical_query(query);
        let canonical = format!("{method}\n{path}\n{query}\n{timestamp}\n{digest}");
        let signature = format!("v1={}", hex(&self.mac(&canonical)));
        // A keyed digest of each part, so the server can say which one changed in transit.
        let part = |name: &str, value: &str| hex(&self.mac(&format!("{name}\n{value}"))[..8]);
        let parts = format!(
            "method={},path={},query={},body={}",
            part("method", method),
            part("path", path),
            part("query", &query),
            part("body", &digest)
        );
        [
            ("x-timestamp", timestamp.to_string()),
            ("x-signature", signature),
            ("x-content-sha256", digest),
            ("x-signature-parts", parts),
        ]
    }

    fn mac(&self, message: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.secret.expose().as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Signs a built request in place (its body must be in memory, not a stream), at the current time.
    pub fn sign(&self, request: &mut reqwest::Request) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default().to_vec();
        let url = request.url().clone();
        let method = request.method().as_str().to_owned();
        for (name, value) in self.headers(&method, url.path(), url.query(), &body, i64::try_from(now).unwrap_or(0)) {
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
                request.headers_mut().insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's worked example.
    #[test]
    fn signs_the_readme_example() {
        let signer = RequestSigner::new("ca_sig_EXAMPLEexampleEXAMPLEexample");
        let [_, (_, signature), (_, digest), _] =
            signer.headers("POST", "/api/v1/keys", Some("b=2&a=1"), br#"{"name":"ci","role":"viewer"}"#, 1_764_000_000);
        assert_eq!(digest, "a4a1845e95ce29fdf3ef70aa9920ba101f86149f27094a0a9c5f8e70789d43bc");
        assert_eq!(signature, "v1=bb9fe7059c25bb689f791a17da838b8b0f4cb3ce9d89209d12563ca83a39a751");
    }
}
