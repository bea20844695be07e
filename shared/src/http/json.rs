//! `ApiJson<T>`: the JSON body extractor. Unlike axum's `Json`, its rejections are our problems: 415 for a
//! wrong content type, 413 past the body limit, and 400 naming the field (a JSON Pointer) for bad JSON.

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON request body, or a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !is_json(content_type) {
            let got = if content_type.is_empty() { "no Content-Type" } else { content_type };
            return Err(ApiError::UnsupportedMediaType(format!("expected application/json, got {got}")));
        }
        // The body-limit layer caps the stream; here we only turn its error into our 413.
        let bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.map_err(|e| {
            // axum wraps the limit's error (sometimes twice): look through the whole chain.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            let mut too_large = false;
            while let Some(c) = cause {
                too_large |= c.is::<http_body_util::LengthLimitError>();
                cause = c.source();
            }
            if too_large {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson { detail: "the request body could not be read".into(), pointer: None }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses JSON, naming the offending field as a JSON Pointer.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let pointer = (path != ".").then(|| pointer_from_path(&path));
        let detail = match &pointer {
            Some(p) => format!("{p}: {inner}"),
            None => inner.to_string(),
        };
        ApiError::InvalidJson { detail, pointer }
    })
}

/// `a.b[2]` → `/a/b/2`.
fn pointer_from_path(path: &str) -> String {
    let mut pointer = String::new();
    for segment in path.split('.') {
        let mut rest = segment;
        while let Some(open) = rest.find('[') {
            let name = &rest[..open];
            if !name.is_empty() {
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
            }
            let close = rest[open..].find(']').map_or(rest.len(), |c| open + c);
            pointer.push('/');
            pointer.push_str(&rest[open + 1..close]);
            rest = rest.get(close + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            pointer.push('/');
            pointer.push_str(&rest.replace('~', "~0").replace('/', "~1"));
        }
    }
    pointer
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
            Err(e) => ApiError::Internal(format!("response serialisation failed: {e}")).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_follow_rfc6901() {
        assert_eq!(pointer_from_path("agent_id"), "/agent_id");
        assert_eq!(pointer_from_path("updates[2].progress"), "/updates/2/progress");
        assert_eq!(pointer_from_path("a/b"), "/a~1b");
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
