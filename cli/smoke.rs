//! `cloudagent test`: smoke-tests a deployment as a user would — its health, its OpenAPI document, an agent's token
//! round trip, a task's round trip and a completion webhook verified with the key's secret — one line per check,
//! exit code non-zero when one fails. With an admin key it works with a throwaway key and agent of its own
//! (revoked and disabled at the end); with a lesser key, what it cannot do is skipped and says why.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cloud_agent_sdk::api::tasks::{CreateTask, Status, TaskOptions};
use cloud_agent_sdk::client::{Client, ClientError};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::operator::Target;
use crate::style::Style;

#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    target: Target,
    /// Where the webhook receiver listens; the deployment must be able to reach it.
    #[arg(long, default_value = "127.0.0.1:0")]
    webhook_listen: SocketAddr,
    /// The URL the deployment posts the webhook to, when it reaches the receiver through a tunnel (default: the
    /// receiver's own address).
    #[arg(long)]
    webhook_url: Option<String>,
    /// The key's `whsec_` webhook secret, when the key cannot create a throwaway key (which brings its own).
    #[arg(long, env = "CLOUD_AGENT_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// How long to wait for the webhook, in seconds.
    #[arg(long, default_value_t = 30)]
    webhook_wait: u64,
}

enum Outcome {
    Pass(String),
    Skip(String),
    Fail(String),
}

struct Report {
    style: Style,
    failed: usize,
}

impl Report {
    fn line(&mut self, check: &str, started: Instant, outcome: Outcome) {
        let ms = started.elapsed().as_millis();
        let (word, text) = match outcome {
            Outcome::Pass(text) => (self.style.green("ok  "), text),
            Outcome::Skip(text) => (self.style.yellow("skip"), text),
            Outcome::Fail(text) => {
                self.failed += 1;
                (self.style.red("FAIL"), text)
            }
        };
        println!("{word}  {check:<14}{text}  ({ms} ms)");
    }
}

/// A throwaway key and what it brings: a client, its webhook secret, and its id to revoke.
struct Throwaway {
    client: Client,
    webhook_secret: String,
    id: String,
}

pub(crate) async fn test(args: TestArgs) -> anyhow::Result<()> {
    let url = args.target.url()?;
    let mut report = Report { style: Style::stdout(), failed: 0 };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;

    let started = Instant::now();
    let health = health(&http, &url).await;
    let reachable = !matches!(health, Outcome::Fail(ref e) if e.contains("cannot be reached"));
    report.line("health", started, health);
    anyhow::ensure!(reachable, "{url} cannot be reached: is it running? (`cloudagent serve` for a local one)");

    let started = Instant::now();
    report.line("openapi", started, openapi(&http, &url).await);

    let client = args.target.client()?;
    let throwaway = throwaway_key(&args.target, &client).await;
    let (worker, webhook_secret) = match &throwaway {
        Ok(t) => (&t.client, Some(t.webhook_secret.clone())),
        Err(_) => (&client, args.webhook_secret.clone()),
    };

    let started = Instant::now();
    report.line("agent token", started, agent_round_trip(&client, &url).await);

    let started = Instant::now();
    report.line("task", started, task_round_trip(worker).await);

    let started = Instant::now();
    let outcome = match (&webhook_secret, &throwaway) {
        (Some(secret), _) => webhook(worker, secret, &args).await,
        (None, Err(why)) => Outcome::Skip(format!(
            "no webhook secret: {why}; pass --webhook-secret (the key's whsec_ secret, shown when it was created)"
        )),
        (None, Ok(_)) => unreachable!("a throwaway key brings its secret"),
    };
    report.line("webhook", started, outcome);

    if let Ok(t) = &throwaway
        && let Err(e) = client.send_json(Method::DELETE, &format!("/api/v1/keys/{}", t.id), None, false).await
    {
        eprintln!(
            "cloudagent: the throwaway key {} was not revoked: {e}; revoke it with `cloudagent keys revoke`",
            t.id
        );
    }
    anyhow::ensure!(report.failed == 0, "{} of the checks failed", report.failed);
    Ok(())
}

async fn health(http: &reqwest::Client, url: &str) -> Outcome {
    let answer = match http.get(format!("{url}/health")).send().await {
        Ok(answer) => answer,
        Err(e) => return Outcome::Fail(format!("{url} cannot be reached: {e}")),
    };
    let code = answer.status();
    match answer.json::<Value>().await {
        Ok(report) => {
            let status = report["status"].as_str().unwrap_or("?").to_owned();
            let text = format!("{status} (version {}, {})", report["version"].as_str().unwrap_or("?"), code.as_u16());
            if code.is_success() && status != "fail" { Outcome::Pass(text) } else { Outcome::Fail(text) }
        }
        Err(e) => Outcome::Fail(format!("{code} without a health report: {e}")),
    }
}

async fn openapi(http: &reqwest::Client, url: &str) -> Outcome {
    let document = match http.get(format!("{url}/api/v1/openapi.json")).send().await {
        Ok(answer) if answer.status().is_success() => answer.json::<Value>().await,
        Ok(answer) => return Outcome::Fail(format!("answered {}", answer.status())),
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    match document {
        Ok(document) => {
            let operations: usize = document["paths"]
                .as_object()
                .into_iter()
                .flat_map(|paths| paths.values())
                .filter_map(Value::as_object)
                .map(|item| item.keys().filter(|k| k.as_str() != "parameters").count())
                .sum();
            let version = document["openapi"].as_str().unwrap_or("?");
            if version.starts_with("3.") && operations > 0 {
                Outcome::Pass(format!("OpenAPI {version}, {operations} operations"))
            } else {
                Outcome::Fail(format!("OpenAPI {version} with {operations} operations"))
            }
        }
        Err(e) => Outcome::Fail(format!("not JSON: {e}")),
    }
}

async fn throwaway_key(target: &Target, client: &Client) -> Result<Throwaway, String> {
    let body = json!({"name": "cloudagent-test", "role": "operator"});
    let created = match client.send_json(Method::POST, "/api/v1/keys", Some(&body), false).await {
        Ok((_, created)) => created,
        Err(ClientError::Forbidden(_)) => return Err("the key cannot create keys (an admin key can)".into()),
        Err(e) => return Err(format!("creating a throwaway key failed: {e}")),
    };
    let (Some(key), Some(secret), Some(id)) =
        (created["key"].as_str(), created["webhook_secret"].as_str(), created["id"].as_str())
    else {
        return Err(format!("the created key is missing fields: {created}"));
    };
    let client = target.builder().map_err(|e| e.to_string())?.api_key(key).build().map_err(|e| e.to_string())?;
    Ok(Throwaway { client, webhook_secret: secret.to_owned(), id: id.to_owned() })
}

/// A throwaway agent: its credential for tokens, the access token for `/agent/me`, a refresh, the new token.
async fn agent_round_trip(client: &Client, url: &str) -> Outcome {
    let agent = format!("cloudagent-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let body = json!({"agent_id": agent, "owner": "cloudagent-test"});
    let created = match client.send_json(Method::POST, "/api/v1/agents", Some(&body), false).await {
        Ok((_, created)) => created,
        Err(ClientError::Forbidden(_)) => {
            return Outcome::Skip("the key cannot create agents (an admin key can)".into());
        }
        Err(e) => return Outcome::Fail(format!("creating an agent: {e}")),
    };
    let Some(secret) = created["agent_secret"].as_str() else {
        return Outcome::Fail(format!("no agent_secret in {created}"));
    };
    let outcome = tokens(url, &agent, secret).await;
    if let Err(e) = client.send_json(Method::POST, &format!("/api/v1/agents/{agent}/disable"), None, false).await {
        eprintln!("cloudagent: the throwaway agent {agent} was not disabled: {e}");
    }
    outcome
}

async fn tokens(url: &str, agent: &str, secret: &str) -> Outcome {
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{url}/api/v1/agent/token"))
        .json(&json!({"agent_id": agent, "agent_secret": secret}))
        .send()
        .await;
    let pair: Value = match login {
        Ok(answer) if answer.status().is_success() => answer.json().await.unwrap_or_default(),
        Ok(answer) => return Outcome::Fail(format!("login answered {}", answer.status())),
        Err(e) => return Outcome::Fail(format!("login: {e}")),
    };
    let me = |token: String| {
        let http = http.clone();
        async move {
            let answer = http.get(format!("{url}/api/v1/agent/me")).bearer_auth(token).send().await.ok()?;
            answer.status().is_success().then_some(())?;
            answer.json::<Value>().await.ok()
        }
    };
    let Some(who) = me(pair["access_token"].as_str().unwrap_or_default().to_owned()).await else {
        return Outcome::Fail("the access token was refused by /api/v1/agent/me".into());
    };
    if who["agent_id"] != agent {
        return Outcome::Fail(format!("/api/v1/agent/me names {} instead", who["agent_id"]));
    }
    let refreshed = http
        .post(format!("{url}/api/v1/agent/token/refresh"))
        .json(&json!({"refresh_token": pair["refresh_token"]}))
        .send()
        .await;
    let renewed: Value = match refreshed {
        Ok(answer) if answer.status().is_success() => answer.json().await.unwrap_or_default(),
        Ok(answer) => return Outcome::Fail(format!("refresh answered {}", answer.status())),
        Err(e) => return Outcome::Fail(format!("refresh: {e}")),
    };
    if me(renewed["access_token"].as_str().unwrap_or_default().to_owned()).await.is_none() {
        return Outcome::Fail("the refreshed access token was refused".into());
    }
    Outcome::Pass(format!("{agent}: login, /agent/me, refresh, /agent/me"))
}

async fn task_round_trip(client: &Client) -> Outcome {
    let message = format!("cloudagent test {}", uuid::Uuid::new_v4());
    let create =
        CreateTask { kind: "echo".into(), payload: json!({"message": message}), options: TaskOptions::default() };
    let task = match client.create_task(create).await {
        Ok(task) => task,
        Err(e) => return Outcome::Fail(format!("delegating an echo task: {e}")),
    };
    let task = if task.is_final() {
        task
    } else {
        match client.wait_for_task(&task.id, Duration::from_mins(1)).await {
            Ok(task) => task,
            Err(e) => return Outcome::Fail(format!("waiting for {}: {e}", task.id)),
        }
    };
    if task.status != Status::Succeeded || task.result.as_ref().map(|r| &r["message"]) != Some(&json!(message)) {
        return Outcome::Fail(format!("{} ended {:?} with {:?}", task.id, task.status, task.result));
    }
    match client.task(&task.id).await {
        Ok(read) if read == task => Outcome::Pass(format!("{}: echo delegated, succeeded, read back", task.id)),
        Ok(_) => Outcome::Fail(format!("{} reads back differently", task.id)),
        Err(e) => Outcome::Fail(format!("reading {} back: {e}", task.id)),
    }
}

/// One delivery as received: its headers of interest and raw body.
struct Delivery {
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    body: axum::body::Bytes,
}

async fn webhook(client: &Client, secret: &str, args: &TestArgs) -> Outcome {
    let listener = match tokio::net::TcpListener::bind(args.webhook_listen).await {
        Ok(listener) => listener,
        Err(e) => return Outcome::Fail(format!("the receiver cannot listen on {}: {e}", args.webhook_listen)),
    };
    let address = listener.local_addr().map_or_else(|_| args.webhook_listen.to_string(), |a| a.to_string());
    let (tx, mut deliveries) = mpsc::unbounded_channel::<Delivery>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let _ = tx.send(Delivery {
                id: header("webhook-id"),
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
                body,
            });
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });
    let url = args.webhook_url.clone().unwrap_or_else(|| format!("http://{address}/hook"));
    let options = TaskOptions { webhook: Some(url.clone()), asynchronous: true, ..TaskOptions::default() };
    let create = CreateTask { kind: "echo".into(), payload: json!({"message": "webhook"}), options };
    let outcome = match client.create_task(create).await {
        Err(ClientError::Validation { pointer: Some(pointer), detail, .. }) if pointer.contains("webhook") => {
            Outcome::Skip(format!(
                "the deployment refuses {url}: {detail} (a local server accepts loopback receivers with \
                 CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK=on; a remote one needs --webhook-url)"
            ))
        }
        Err(e) => Outcome::Fail(format!("delegating with a webhook: {e}")),
        Ok(task) => {
            // Whichever comes first: the delivery, or the task's record of an attempt that failed (the deployment
            // could not reach the receiver, or refused to call it), which says why.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(args.webhook_wait);
            loop {
                let wait = tokio::time::sleep(Duration::from_millis(250));
                tokio::select! {
                    delivery = deliveries.recv() => break match delivery {
                        Some(delivery) => check_delivery(secret, &delivery, &task.id),
                        None => Outcome::Fail("the receiver stopped".into()),
                    },
                    () = wait => {}
                }
                let failed = client.task(&task.id).await.ok().and_then(|t| t.webhook).and_then(|w| {
                    w.attempts
                        .iter()
                        .find_map(|a| a.error.clone().or_else(|| a.status.map(|s| format!("answered {s}"))))
                });
                if let Some(error) = failed {
                    break Outcome::Fail(format!(
                        "the deployment could not deliver to {url}: {error} (a local server calls loopback \
                         receivers with CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK=on; a remote one needs --webhook-url)"
                    ));
                }
                if tokio::time::Instant::now() > deadline {
                    break Outcome::Fail(format!(
                        "no webhook for {} reached {url} within {} s (can the deployment reach it? --webhook-url)",
                        task.id, args.webhook_wait
                    ));
                }
            }
        }
    };
    server.abort();
    outcome
}

fn check_delivery(secret: &str, delivery: &Delivery, task_id: &str) -> Outcome {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if let Err(e) = cloud_agent_sdk::webhook::verify(
        secret,
        delivery.id.as_deref(),
        delivery.timestamp.as_deref(),
        delivery.signature.as_deref(),
        &delivery.body,
        now,
    ) {
        return Outcome::Fail(format!("the delivery does not verify: {e}"));
    }
    // The event: `{"type": "task.<status>", "timestamp": …, "data": <the task>}`.
    let event: Value = serde_json::from_slice(&delivery.body).unwrap_or_default();
    if event["data"]["id"] == task_id && event["type"] == "task.succeeded" {
        Outcome::Pass(format!("{task_id}: task.succeeded delivered, signature verified with the key's secret"))
    } else {
        Outcome::Fail(format!("a verified delivery of {} for {}", event["type"], event["data"]["id"]))
    }
}
