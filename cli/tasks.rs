//! Task commands over HTTP: `delegate` one task, `batch` up to ten, and `tasks` to list, read, wait for and
//! cancel them — against a running `cloudagent serve` or a deployment.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{Value, json};

use crate::operator::{Target, call, urlencoding};

/// Reads a JSON argument: inline text, `@file`, or `-` for standard input.
fn json_arg(text: &str) -> anyhow::Result<Value> {
    let text = if text == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else if let Some(path) = text.strip_prefix('@') {
        std::fs::read_to_string(path)?
    } else {
        text.to_owned()
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("not JSON: {e}"))
}

#[derive(Debug, clap::Args)]
pub(crate) struct DelegateArgs {
    /// The handler (`cloudagent tasks capabilities` lists them).
    #[arg(value_name = "TYPE")]
    kind: String,
    /// The input: JSON, `@file` or `-` (stdin).
    #[arg(long, default_value = "{}")]
    payload: String,
    /// high, normal or low.
    #[arg(long)]
    priority: Option<String>,
    /// Where to POST the finished task (signed with the key's whsec_ secret).
    #[arg(long)]
    webhook: Option<String>,
    /// Sending the same key and input again returns the same task.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Queue it and return at once (202).
    #[arg(long = "async")]
    asynchronous: bool,
    /// With --async: wait until the task finishes and print it then.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn delegate(args: DelegateArgs) -> anyhow::Result<()> {
    let mut options = json!({"async": args.asynchronous});
    for (field, value) in
        [("priority", args.priority), ("webhook", args.webhook), ("idempotency_key", args.idempotency_key)]
    {
        if let Some(value) = value {
            options[field] = Value::String(value);
        }
    }
    if let Some(ms) = args.timeout_ms {
        options["timeout_ms"] = json!(ms);
    }
    if options["idempotency_key"].is_null() {
        // So a retry after a lost answer returns the task the first attempt created instead of making another.
        options["idempotency_key"] = json!(format!("cli-{}", uuid::Uuid::new_v4()));
    }
    let body = json!({"type": args.kind, "payload": json_arg(&args.payload)?, "options": options});
    let task = call(&args.target, reqwest::Method::POST, "/v3/tasks", Some(body)).await?;
    let task = if args.wait { wait(&args.target, &task).await? } else { task };
    println!("{}", serde_json::to_string_pretty(&task)?);
    Ok(())
}

/// Polls a task until it is final (at most ten minutes).
async fn wait(target: &Target, task: &Value) -> anyhow::Result<Value> {
    let id = task["id"].as_str().ok_or_else(|| anyhow::anyhow!("the answer names no task"))?;
    let deadline = Instant::now() + Duration::from_mins(10);
    let mut delay = Duration::from_millis(200);
    loop {
        let now = call(target, reqwest::Method::GET, &format!("/v3/tasks/{id}"), None).await?;
        if !matches!(now["status"].as_str(), Some("queued" | "running")) {
            return Ok(now);
        }
        anyhow::ensure!(Instant::now() < deadline, "task {id} is still {} after ten minutes", now["status"]);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct BatchArgs {
    /// Up to ten tasks: a JSON array of {"task_type", "task_data", ...} (or {"tasks": [...]}), inline, `@file`
    /// or `-`.
    tasks: String,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn batch(args: BatchArgs) -> anyhow::Result<()> {
    let tasks = match json_arg(&args.tasks)? {
        Value::Array(list) => json!({"tasks": list}),
        other => other,
    };
    let answer = call(&args.target, reqwest::Method::POST, "/api/batch", Some(tasks)).await?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if answer["failed"].as_u64().unwrap_or(0) > 0 {
        anyhow::bail!("{} of the batch's tasks failed (see their errors above)", answer["failed"]);
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum TasksCommand {
    /// The tenant's tasks, newest first, one JSON line each.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        kind: Option<String>,
        /// Stop after this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
        #[command(flatten)]
        target: Target,
    },
    /// One task.
    Get {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Wait until a task finishes, then print it.
    Wait {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Cancel a queued or running task.
    Cancel {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// The handlers this deployment runs, with their input schemas and limits.
    Capabilities {
        #[command(flatten)]
        target: Target,
    },
    /// The tenant's task statistics.
    Metrics {
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) async fn tasks(command: TasksCommand) -> anyhow::Result<()> {
    match command {
        TasksCommand::List { status, kind, max, target } => {
            let mut filters: Vec<(&str, String)> = Vec::new();
            filters.extend(status.map(|s| ("status", s)));
            filters.extend(kind.map(|k| ("type", k)));
            let mut printed = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut pairs = filters.clone();
                pairs.extend(cursor.take().map(|c| ("cursor", c)));
                let query = pairs.iter().map(|(k, v)| format!("{k}={}", urlencoding(v))).collect::<Vec<_>>().join("&");
                let page = call(&target, reqwest::Method::GET, &format!("/v3/tasks?{query}"), None).await?;
                for task in page["tasks"].as_array().into_iter().flatten() {
                    if printed == max {
                        return Ok(());
                    }
                    println!("{task}");
                    printed += 1;
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return Ok(()),
                }
            }
        }
        TasksCommand::Get { id, target } => {
            let task = call(&target, reqwest::Method::GET, &format!("/v3/tasks/{id}"), None).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
        }
        TasksCommand::Wait { id, target } => {
            let task = wait(&target, &json!({"id": id})).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
        }
        TasksCommand::Cancel { id, target } => {
            let task = call(&target, reqwest::Method::DELETE, &format!("/v3/tasks/{id}"), None).await?;
            println!("{}", serde_json::to_string_pretty(&task)?);
        }
        TasksCommand::Capabilities { target } => {
            let caps = call(&target, reqwest::Method::GET, "/api/capabilities", None).await?;
            println!("{}", serde_json::to_string_pretty(&caps)?);
        }
        TasksCommand::Metrics { target } => {
            let metrics = call(&target, reqwest::Method::GET, "/api/metrics", None).await?;
            println!("{}", serde_json::to_string_pretty(&metrics)?);
        }
    }
    Ok(())
}
