//! `ApiQuery<T>`: the query-string extractor. Unlike axum's `Query`, a bad parameter is our problem+json, a 400
//! whose `pointer` names the parameter (`/limit`), so a client knows what to fix.

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// Query parameters, deserialised into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|e| {
            let field = e.path().to_string();
            let pointer = (field != ".").then(|| format!("/{field}"));
            let detail = match &pointer {
                Some(_) => format!("query parameter {field}: {}", e.inner()),
                None => format!("query string: {}", e.inner()),
            };
            ApiError::InvalidParameter { detail, pointer }
        })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Params {
        limit: Option<u32>,
    }

    async fn extract(uri: &str) -> Result<ApiQuery<Params>, ApiError> {
        let (mut parts, ()) = http::Request::builder().uri(uri).body(()).unwrap().into_parts();
        ApiQuery::<Params>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn a_bad_parameter_is_named() {
        assert_eq!(extract("/x?limit=5").await.unwrap().0.limit, Some(5));
        assert_eq!(extract("/x").await.unwrap().0.limit, None);
        match extract("/x?limit=abc").await {
            Err(ApiError::InvalidParameter { pointer, detail }) => {
                assert_eq!(pointer.as_deref(), Some("/limit"));
                assert!(detail.contains("limit"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
