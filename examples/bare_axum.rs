//! The floor for `benches/cpu_per_request.py`: one bare axum route answering what `GET /health/live` answers,
//! with no layers at all (no ids, spans, access log, metrics or problem rendering). Whatever our stack costs on
//! top of this is the price of those layers.

use axum::Router;
use axum::routing::get;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3900".into());
    let app = Router::new().route(
        "/health/live",
        get(|| async {
            (
                [("content-type", "application/health+json"), ("cache-control", "no-store")],
                r#"{"instance":"0123456789ab","status":"pass"}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
