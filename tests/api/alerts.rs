//! Alerts reach someone once per cooldown across instances: several instances over one table see the same
//! condition at once, and the webhook (verified with the Standard Webhooks reference library) and the SNS topic
//! (moto, with an SQS queue subscribed to it) each get one message. A delivery that fails gives its claim back.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_agent::alerts::AlertKind;
use cloud_agent::alerts::delivery::{self, Delivery, Sent};
use cloud_agent::store::DynStore;
use serde_json::Value;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver that records each request and answers with `status`.
async fn receiver(status: u16) -> (Arc<Mutex<Vec<(http::HeaderMap, String)>>>, String) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let router = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (got, url)
}

/// One instance over `store`: its own id, breakers and cooldowns, as another Lambda instance would have.
fn instance(store: &DynStore, dir: &std::path::Path, vars: &[(&str, &str)]) -> cloud_agent::AppState {
    let config = common::test_config_with(dir, vars);
    cloud_agent::AppState::new(config, store.clone())
}

fn sqs_endpoint() -> Option<String> {
    let endpoint = std::env::var("CLOUD_AGENT_TEST_SQS_ENDPOINT").ok();
    if endpoint.is_none() {
        assert!(std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(), "CLOUD_AGENT_TEST_SQS_ENDPOINT is required");
        eprintln!("SKIPPED: CLOUD_AGENT_TEST_SQS_ENDPOINT not set");
    }
    endpoint
}

async fn aws_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::from_keys("test", "test", None))
        .http_client({
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
        })
        .load()
        .await
}

/// A topic with a queue subscribed to it (raw delivery: the queue holds the message as published).
async fn topic_with_queue(endpoint: &str) -> (String, aws_sdk_sqs::Client, String) {
    let config = aws_config(endpoint).await;
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let topic = sns.create_topic().name(format!("alerts-{suffix}")).send().await.unwrap().topic_arn.unwrap();
    let queue = sqs.create_queue().queue_name(format!("alerts-{suffix}")).send().await.unwrap().queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic, sqs, queue)
}

/// Every message in the queue now (moto delivers a publish to its subscribed queue before answering).
async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await.unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(message.body.clone().unwrap_or_default());
            sqs.delete_message().queue_url(queue).receipt_handle(message.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
}

async fn one_alert_across_instances_reaches_the_webhook_and_the_topic(store: DynStore) {
    let Some(endpoint) = sqs_endpoint() else { return };
    let (topic, sqs, queue) = topic_with_queue(&endpoint).await;
    let (got, url) = receiver(204).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        // Any process is over 1 MiB: the memory alert holds on every instance.
        ("CLOUD_AGENT_ALERT_MEMORY_MB", "1"),
        ("CLOUD_AGENT_ALERT_WEBHOOK_URL", url.as_str()),
        ("CLOUD_AGENT_ALERT_WEBHOOK_SECRET", SECRET),
        ("CLOUD_AGENT_ALERT_TOPIC_ARN", topic.as_str()),
        ("CLOUD_AGENT_SNS_ENDPOINT", endpoint.as_str()),
        ("CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK", "on"),
    ];
    // Five instances see the condition at the same moment.
    let instances: Vec<_> = (0..5).map(|_| instance(&store, dir.path(), &vars)).collect();
    let reports =
        futures_util::future::join_all(instances.iter().map(cloud_agent::features::health::routes::report)).await;
    for report in &reports {
        assert!(report.alerts.iter().any(|a| a.kind == AlertKind::Memory), "every instance reports the condition");
    }
    let deliveries = got.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1, "one webhook for five instances");
    let (headers, body) = &deliveries[0];
    let pick = |name: &str| headers[name].to_str().unwrap().to_owned();
    let verified = crate::tasks::verify_with_reference(
        SECRET,
        &[
            ("webhook-id".into(), pick("webhook-id")),
            ("webhook-timestamp".into(), pick("webhook-timestamp")),
            ("webhook-signature".into(), pick("webhook-signature")),
        ],
        body,
    );
    match verified {
        Ok(event) => {
            assert_eq!(event["type"], "alert.memory", "{event}");
            assert_eq!(event["data"]["kind"], "memory", "{event}");
        }
        Err(e) if e == "SKIPPED" => {}
        Err(e) => panic!("the reference library refused the alert: {e}"),
    }
    let messages = drain_queue(&sqs, &queue).await;
    assert_eq!(messages.len(), 1, "one message on the topic for five instances: {messages:?}");
    let message: Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(message["type"], "alert.memory");

    // New instances within the cooldown (their own cooldowns are fresh): still nothing more is sent.
    let later: Vec<_> = (0..3).map(|_| instance(&store, dir.path(), &vars)).collect();
    for state in &later {
        cloud_agent::features::health::routes::report(state).await;
    }
    assert_eq!(got.lock().unwrap().len(), 1, "the cooldown holds across instances");
    assert!(drain_queue(&sqs, &queue).await.is_empty());
}

/// The claim itself: one winner per cooldown, the next one after it, a release only by its holder.
async fn the_cooldown_claim_has_one_winner_per_period(store: DynStore) {
    let cooldown = Duration::from_mins(5);
    let now = cloud_agent::store::now_ms();
    let claim = |instance: &'static str, at: i64| {
        let store = store.clone();
        async move { delivery::claim(&store, AlertKind::ErrorRate, instance, at, cooldown).await.unwrap() }
    };
    let racing = futures_util::future::join_all((0..8).map(|_| claim("a", now))).await;
    assert_eq!(racing.iter().filter(|won| **won).count(), 1, "{racing:?}");
    assert!(!claim("b", now + 299_000).await, "within the cooldown");
    delivery::release(&store, AlertKind::ErrorRate, "b").await.unwrap();
    assert!(!claim("b", now + 299_500).await, "b's release does not free a's claim");
    assert!(claim("b", now + 300_001).await, "after the cooldown");
    delivery::release(&store, AlertKind::ErrorRate, "b").await.unwrap();
    assert!(claim("c", now + 300_002).await, "a holder's release frees it");
}

/// A receiver that refuses: the claim is given back, so the next instance that sees the condition tries again.
async fn a_failed_delivery_gives_the_claim_back(store: DynStore) {
    let (got, url) = receiver(500).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CLOUD_AGENT_ALERT_MEMORY_MB", "1"),
        ("CLOUD_AGENT_ALERT_WEBHOOK_URL", url.as_str()),
        ("CLOUD_AGENT_ALERT_WEBHOOK_SECRET", SECRET),
        ("CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK", "on"),
    ];
    let raised = [cloud_agent::alerts::Active { kind: AlertKind::Memory, detail: "resident memory 90 MiB".into() }];
    for _ in 0..3 {
        let state = instance(&store, dir.path(), &vars);
        let outcomes = state.part::<Delivery>().send(&state, &raised).await;
        assert_eq!(outcomes, [Sent::Failed]);
    }
    assert_eq!(got.lock().unwrap().len(), 3, "each instance tried: none was shut out by a failed claim");
}

/// The health monitor reads the dead-letter queue's depth (moto) and alerts on it; the report shows the depth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queues_depth_is_reported_and_alerted_on() {
    let Some(endpoint) = sqs_endpoint() else { return };
    let sqs = aws_sdk_sqs::Client::new(&aws_config(&endpoint).await);
    let name = format!("dlq-{}", uuid::Uuid::new_v4().simple());
    let dlq = sqs.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vars = [("CLOUD_AGENT_TASK_DLQ_URL", dlq.as_str()), ("CLOUD_AGENT_SQS_ENDPOINT", endpoint.as_str())];
    let store = common::embedded();
    let empty = instance(&store.store, dir.path(), &vars);
    let report = cloud_agent::features::health::routes::report(&empty).await;
    let check = &report.checks["queue:deadLetters"][0];
    assert_eq!(
        (check.observed_value, check.status),
        (Some(0.0), cloud_agent::features::health::routes::HealthStatus::Pass)
    );
    assert!(report.alerts.is_empty(), "{:?}", report.alerts);

    for body in ["{\"task\": 1}", "{\"task\": 2}"] {
        sqs.send_message().queue_url(&dlq).message_body(body).send().await.unwrap();
    }
    let later = instance(&store.store, dir.path(), &vars);
    let report = cloud_agent::features::health::routes::report(&later).await;
    let check = &report.checks["queue:deadLetters"][0];
    assert_eq!(check.observed_value, Some(2.0), "{check:?}");
    assert_eq!(check.status, cloud_agent::features::health::routes::HealthStatus::Warn);
    let alert = report.alerts.iter().find(|a| a.kind == AlertKind::DeadLetters).expect("the depth raises an alert");
    assert!(alert.detail.contains("2 message"), "{alert:?}");
}

on_both_backends!(
    one_alert_across_instances_reaches_the_webhook_and_the_topic,
    the_cooldown_claim_has_one_winner_per_period,
    a_failed_delivery_gives_the_claim_back,
);
