//! `cloudagent status`: one screen about a deployment — its health and version, its checks, the server's circuit
//! breakers, the tenant's queue and recent task outcomes, and this client's own breaker. Exits non-zero when the
//! deployment is unhealthy (`fail`) or cannot be reached.

use cloud_agent_sdk::client::Client;
use reqwest::Method;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: crate::operator::Target,
}

fn line(label: &str, text: &str) {
    println!("{label:<10}{text}");
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let url = args.target.url()?;
    // The health report is public, and a failing deployment answers it with 503: read it whatever the status.
    let answer = reqwest::get(format!("{url}/health"))
        .await
        .map_err(|e| anyhow::anyhow!("{url} cannot be reached: {e} (is it running? `cloudagent serve`)"))?;
    let code = answer.status();
    let health: Value = answer
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{url}/health answered {code} without a health report: {e}"))?;
    let verdict = health["status"].as_str().unwrap_or("unknown").to_owned();
    line(
        "endpoint",
        &format!(
            "{url}  {verdict}  (version {}, release {}, {})",
            health["version"].as_str().unwrap_or("?"),
            health["releaseId"].as_str().unwrap_or("?"),
            health["environment"].as_str().unwrap_or("?")
        ),
    );
    for (name, checks) in health["checks"].as_object().into_iter().flatten() {
        for check in checks.as_array().into_iter().flatten() {
            let value = match (check["observedValue"].as_f64(), check["observedUnit"].as_str()) {
                (Some(v), Some(unit)) => format!(" {v} {unit}"),
                (Some(v), None) => format!(" {v}"),
                _ => String::new(),
            };
            line("check", &format!("{name}  {}{value}", check["status"].as_str().unwrap_or("?")));
        }
    }
    for alert in health["alerts"].as_array().into_iter().flatten() {
        line("alert", &alert.to_string());
    }
    match args.target.client() {
        Ok(client) => guarded(&client).await,
        Err(e) => line("note", &format!("only the public health is shown: {e}")),
    }
    anyhow::ensure!(verdict != "fail", "the deployment is unhealthy ({verdict})");
    Ok(())
}

/// What a key sees: the server's breakers, the queue and task outcomes; then this client's breaker.
async fn guarded(client: &Client) {
    match client.send_json(Method::GET, "/api/v1/circuit-breakers", None, false).await {
        Ok((_, breakers)) => {
            for breaker in breakers["breakers"].as_array().into_iter().flatten() {
                line(
                    "breaker",
                    &format!(
                        "{}  {}",
                        breaker["name"].as_str().unwrap_or("?"),
                        breaker["state"].as_str().unwrap_or("?")
                    ),
                );
            }
        }
        Err(e) => line("breaker", &format!("not shown: {e}")),
    }
    match client.send_json(Method::GET, "/v3/tasks?status=queued&limit=100", None, false).await {
        Ok((_, page)) => {
            let queued = page["tasks"].as_array().map_or(0, Vec::len);
            let more = if page["next_cursor"].is_string() { "+" } else { "" };
            line("queue", &format!("{queued}{more} queued"));
        }
        Err(e) => line("queue", &format!("not shown: {e}")),
    }
    match client.send_json(Method::GET, "/api/metrics", None, false).await {
        Ok((_, metrics)) => {
            let count = |field: &str| metrics[field].as_u64().unwrap_or(0);
            let rate = metrics["success_rate"].as_f64().map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0));
            line(
                "tasks",
                &format!(
                    "{} finished, {rate} succeeded, {} failed, {} timed out, {} cancelled",
                    count("total"),
                    count("failed"),
                    count("timed_out"),
                    count("cancelled")
                ),
            );
        }
        Err(e) => line("tasks", &format!("not shown: {e}")),
    }
    for endpoint in client.endpoints() {
        let value: Value = serde_json::to_value(&endpoint).unwrap_or_default();
        line(
            "client",
            &format!(
                "{}  {}, breaker {}, {:.1} ms",
                endpoint.url.trim_end_matches('/'),
                value["health"].as_str().unwrap_or("?"),
                value["breaker"].as_str().unwrap_or("?"),
                endpoint.latency_ms
            ),
        );
    }
    line("client", &format!("retry budget {} tokens", client.retry_budget().available()));
}
