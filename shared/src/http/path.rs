//! `ApiPath<T>`: the path-parameter extractor. The parameter is parsed into its domain newtype at the edge
//! (`ApiPath<ProgressTaskId>`); one that does not parse is a 422 problem whose `pointer` names it (`/task_id`), and the
//! handler never sees a raw string.

use axum::extract::{FromRequestParts, RawPathParams};
use http::request::Parts;
use serde::de::value::{Error as ValueError, MapDeserializer, StrDeserializer};
use serde::de::{DeserializeOwned, IntoDeserializer as _};

use crate::problem::ApiError;

/// The route's path parameters, deserialised into `T`: the newtype of a route's one parameter, or a struct
/// naming each of several.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Percent-decoded by axum; a parameter that is not UTF-8 cannot be any of our ids.
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Unprocessable { detail: e.body_text(), pointer: None })?;
        let pairs: Vec<(&str, &str)> = params.iter().collect();
        if let [(name, value)] = pairs.as_slice() {
            let deserializer: StrDeserializer<'_, ValueError> = value.into_deserializer();
            return T::deserialize(deserializer).map(ApiPath).map_err(|e| named(name, &e));
        }
        let deserializer = MapDeserializer::<_, ValueError>::new(pairs.iter().copied());
        serde_path_to_error::deserialize(deserializer).map(ApiPath).map_err(|e| {
            let name = e.path().to_string();
            named(&name, e.inner())
        })
    }
}

fn named(name: &str, error: &ValueError) -> ApiError {
    ApiError::Unprocessable { detail: format!("path parameter {name}: {error}"), pointer: Some(format!("/{name}")) }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;
    use crate::ids::ProgressTaskId;

    #[derive(Debug, serde::Deserialize)]
    struct Pair {
        user_id: crate::ids::UserId,
        task_id: ProgressTaskId,
    }

    async fn call(router: Router, uri: &str) -> (u16, serde_json::Value) {
        let router = crate::http::layered(router, 1024, std::time::Duration::from_secs(5), None);
        let response = router.oneshot(http::Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    fn one() -> Router {
        Router::new().route(
            "/tasks/{task_id}",
            get(|ApiPath(task): ApiPath<ProgressTaskId>| async move { task.as_str().to_owned() }),
        )
    }

    fn two() -> Router {
        Router::new().route(
            "/users/{user_id}/tasks/{task_id}",
            get(|ApiPath(p): ApiPath<Pair>| async move { format!("{}/{}", p.user_id.as_str(), p.task_id.as_str()) }),
        )
    }

    #[tokio::test]
    async fn a_valid_parameter_reaches_the_handler_as_its_newtype() {
        assert_eq!(call(one(), "/tasks/task-1").await.0, 200);
        assert_eq!(call(two(), "/users/u-1/tasks/t-2").await.0, 200);
    }

    #[tokio::test]
    async fn a_bad_parameter_is_a_422_naming_it() {
        let (status, body) = call(one(), "/tasks/has%20space").await;
        assert_eq!(status, 422);
        assert_eq!(body["pointer"], "/task_id");
        assert!(body["detail"].as_str().unwrap().contains("task_id"), "{body}");
        let (status, body) = call(two(), "/users/u-1/tasks/bad%2Fslash").await;
        assert_eq!(status, 422);
        assert_eq!(body["pointer"], "/task_id", "{body}");
    }
}
