//! Security headers on every response, whatever answered it (a handler, a rejection, the 404 fallback, a
//! panic): this API serves JSON to programs, never pages to browsers, so everything a browser could be tricked
//! into doing with a response is switched off. A handler's own value for one of them is kept.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

const HEADERS: [(HeaderName, &str); 5] = [
    // Never guess a type other than the declared one (a JSON body is not a script).
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    // Never render in a frame.
    (header::X_FRAME_OPTIONS, "DENY"),
    // Nothing in a response may load or run anything.
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    // HTTPS only, for two years, on every subdomain (browsers ignore it on plain-HTTP local runs).
    (header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
    // Links followed from a response carry no URL of ours.
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Adds the headers a response does not set itself.
pub fn apply(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_are_added_and_a_handlers_own_value_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
        apply(&mut headers);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert!(headers[header::STRICT_TRANSPORT_SECURITY].to_str().unwrap().starts_with("max-age="));
        assert_eq!(headers.len(), HEADERS.len());
    }
}
