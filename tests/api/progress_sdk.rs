//! 10 000 progress updates sent by the SDK through the server, with a faulty network in between (responses
//! dropped after the server handled the request, requests refused before it saw them): exactly 10 000 events
//! are stored, none twice, and every task ends in its newest state.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use cloud_agent::store::{DynStore, Query, keys};
use cloud_agent_sdk::{
    AgentSecret, ProgressReporter, ProgressUpdate, ReporterOptions, TaskStatus, TokenManager, TokenManagerOptions,
};
use common::{TestApp, serve_router};

const TASKS: usize = 100;
const STEPS: usize = 100;

/// A network between the SDK and the server that loses things.
#[derive(Clone)]
struct FaultyNetwork {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

async fn relay(State(net): State<FaultyNetwork>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let faulty = parts.uri.path() == "/api/v1/agent/progress";
    let n = if faulty { net.seen.fetch_add(1, Ordering::SeqCst) } else { u64::MAX };
    if n % 11 == 5 {
        // Refused before the server saw it: a forced retry.
        net.refused.fetch_add(1, Ordering::SeqCst);
        return (http::StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    let mut forward = net.client.request(parts.method, format!("{}{}", net.upstream, parts.uri));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let response = forward.body(body).send().await.unwrap();
    if n % 7 == 3 {
        // The server did the work; the answer is lost on the way back.
        net.dropped.fetch_add(1, Ordering::SeqCst);
        return (http::StatusCode::BAD_GATEWAY, "connection reset").into_response();
    }
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let mut out = (status, bytes).into_response();
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

fn update(task: usize, step: usize) -> ProgressUpdate {
    let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000 + i64::try_from(step).unwrap()).unwrap();
    ProgressUpdate {
        task_id: format!("sim-{task:03}"),
        progress: step as f64 * 100.0 / (STEPS - 1) as f64,
        status: if step + 1 == STEPS { TaskStatus::Succeeded } else { TaskStatus::Running },
        message: Some(format!("step {step}")),
        metrics: std::collections::BTreeMap::new(),
        timestamp: at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        seq: step as u64,
    }
}

async fn ten_thousand_updates_arrive_exactly_once(store: DynStore) {
    let app = TestApp::builder().store(store.clone()).env("CLOUD_AGENT_ACCESS_TTL_SECS", "900").spawn().await;
    let secret = app.register_agent("sim", "user-1").await;
    let upstream = app.address.clone();
    let net = FaultyNetwork {
        upstream,
        client: reqwest::Client::new(),
        seen: Arc::default(),
        dropped: Arc::default(),
        refused: Arc::default(),
    };
    let proxy = serve_router(axum::Router::new().fallback(relay).with_state(net.clone())).await;

    let tokens =
        TokenManager::login(&proxy, "sim", AgentSecret::new(secret), TokenManagerOptions::default()).await.unwrap();
    let options = ReporterOptions {
        backoff_base: std::time::Duration::from_millis(5),
        backoff_cap: std::time::Duration::from_millis(50),
        ..ReporterOptions::default()
    };
    let reporter = ProgressReporter::new(&proxy, tokens, options);
    let mut outcomes = Vec::with_capacity(TASKS * STEPS);
    // Interleaved across tasks, as concurrent work would report.
    for step in 0..STEPS {
        for task in 0..TASKS {
            outcomes.push(reporter.report(update(task, step)).await.unwrap());
        }
    }
    let stats_handle = reporter.clone();
    reporter.shutdown().await;
    for outcome in outcomes {
        assert_eq!(outcome.await.unwrap(), Ok(()), "every update is durably accepted");
    }
    assert!(net.dropped.load(Ordering::SeqCst) > 50 && net.refused.load(Ordering::SeqCst) > 50, "faults were injected");
    assert!(stats_handle.stats().replays.load(Ordering::SeqCst) > 0, "lost answers were recovered by replay");

    let mut events = 0usize;
    let mut distinct = BTreeSet::new();
    for task in 0..TASKS {
        let mut cursor = None;
        loop {
            let page = store
                .query(
                    Query::partition(keys::task_partition("user-1", &format!("sim-{task:03}")))
                        .prefix(keys::EVENT_PREFIX)
                        .limit(1000)
                        .after(cursor),
                )
                .await
                .unwrap();
            for item in &page.items {
                events += 1;
                distinct.insert((task, item.get_i64("seq").unwrap()));
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let state = store.get(&keys::task_state("user-1", &format!("sim-{task:03}"))).await.unwrap().unwrap();
        assert_eq!(
            state.get_i64("seq"),
            Some(i64::try_from(STEPS - 1).unwrap()),
            "task {task} ends in its newest state"
        );
        assert_eq!(state.get_str("status"), Some("succeeded"));
    }
    assert_eq!(events, TASKS * STEPS, "exactly 10 000 events");
    assert_eq!(distinct.len(), TASKS * STEPS, "none duplicated");
}

on_both_backends!(ten_thousand_updates_arrive_exactly_once);
