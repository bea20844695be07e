//! `cloudagent benchmark`: a load generator through the SDK's client — N requests from C concurrent callers, each a
//! task delegation (`--type`) or a GET of a route (`--route`) — with a progress bar on a terminal, then throughput,
//! an HDR histogram's latency percentiles and errors by kind (or all of it as JSON with `--json`). Each request is
//! one attempt (retries would hide what the service did), and its latency is the SDK call's, end to end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cloud_agent_sdk::RetryPolicy;
use cloud_agent_sdk::api::tasks::{CreateTask, TaskOptions};
use cloud_agent_sdk::client::{Client, ClientError};
use hdrhistogram::Histogram;
use reqwest::Method;
use serde_json::{Value, json};

use crate::operator::Target;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchmarkArgs {
    /// Concurrent callers.
    #[arg(long, short = 'c', default_value_t = 8)]
    concurrency: usize,
    /// Requests in all.
    #[arg(long, short = 'n', default_value_t = 1000)]
    requests: usize,
    /// Delegate tasks of this type (`POST /v3/tasks`, run in the request unless the type always queues).
    #[arg(long = "type", conflicts_with = "route")]
    kind: Option<String>,
    /// GET this route instead, e.g. /health or /api/capabilities.
    #[arg(long)]
    route: Option<String>,
    /// The tasks' payload (default for echo: {"message": "benchmark"}).
    #[arg(long)]
    payload: Option<String>,
    /// Print the results as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// What one caller measured; merged at the end.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        // Microseconds from 1 µs to 10 min at 3 significant digits (0.1 % error).
        Ok(Self { latency: Histogram::new_with_bounds(1, 600_000_000, 3)?, errors: BTreeMap::new(), first_error: None })
    }
}

enum Work {
    Delegate(CreateTask),
    Get(String),
}

impl Work {
    fn describe(&self) -> String {
        match self {
            Self::Delegate(task) => format!("POST /v3/tasks ({})", task.kind),
            Self::Get(route) => format!("GET {route}"),
        }
    }

    async fn once(&self, client: &Client) -> Result<(), ClientError> {
        match self {
            // `create_task` adds an idempotency key to each, as any SDK caller's create has.
            Self::Delegate(task) => client.create_task(task.clone()).await.map(drop),
            Self::Get(route) => client.send_json(Method::GET, route, None, true).await.map(drop),
        }
    }
}

pub(crate) async fn benchmark(args: BenchmarkArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency >= 1 && args.requests >= 1, "--concurrency and --requests must be at least 1");
    let work = match (&args.kind, &args.route) {
        (_, Some(route)) => {
            anyhow::ensure!(route.starts_with('/'), "--route {route}: give the path, e.g. /health");
            Work::Get(route.clone())
        }
        (kind, None) => {
            let kind = kind.clone().unwrap_or_else(|| "echo".into());
            let payload = match &args.payload {
                Some(text) => serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?,
                None if kind == "echo" => json!({"message": "benchmark"}),
                None => anyhow::bail!("--type {kind} needs --payload (its schema: `cloudagent tasks capabilities`)"),
            };
            Work::Delegate(CreateTask { kind, payload, options: TaskOptions::default() })
        }
    };
    let client =
        args.target.builder()?.retry_policy(RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }).build()?;
    let url = args.target.url()?;
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let bar = indicatif::ProgressBar::new(args.requests as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests  {elapsed} elapsed, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(args.requests) {
        let (client, work, next, bar, requests) =
            (client.clone(), work.clone(), next.clone(), bar.clone(), args.requests);
        callers.spawn(async move {
            let mut tally = Tally::new()?;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let began = Instant::now();
                let outcome = work.once(&client).await;
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                tally.latency.saturating_record(micros);
                if let Err(e) = outcome {
                    *tally.errors.entry(e.kind()).or_default() += 1;
                    tally.first_error.get_or_insert_with(|| e.to_string());
                }
                bar.inc(1);
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = Tally::new()?;
    while let Some(tally) = callers.join_next().await {
        let tally = tally??;
        total.latency.add(&tally.latency)?;
        for (kind, count) in tally.errors {
            *total.errors.entry(kind).or_default() += count;
        }
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let results = results(&args, &url, &work.describe(), &total, elapsed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_results(&results, total.first_error.as_deref());
    }
    Ok(())
}

fn results(args: &BenchmarkArgs, url: &str, what: &str, total: &Tally, elapsed: Duration) -> Value {
    let ms = |micros: u64| (micros as f64 / 1000.0 * 1000.0).round() / 1000.0;
    let h = &total.latency;
    let failed: u64 = total.errors.values().sum();
    json!({
        "target": url,
        "request": what,
        "concurrency": args.concurrency,
        "requests": h.len(),
        "succeeded": h.len() - failed,
        "failed": failed,
        "errors": total.errors,
        "duration_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "throughput_rps": (h.len() as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "latency_ms": {
            "min": ms(h.min()),
            "mean": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            "p50": ms(h.value_at_quantile(0.50)),
            "p90": ms(h.value_at_quantile(0.90)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p99_9": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
        },
    })
}

fn print_results(r: &Value, first_error: Option<&str>) {
    let line = |label: &str, text: String| println!("{label:<11}{text}");
    line("target", format!("{}  {}  concurrency {}", r["target"], r["request"], r["concurrency"]).replace('"', ""));
    line("finished", format!("{} requests in {} s: {} req/s", r["requests"], r["duration_s"], r["throughput_rps"]));
    let l = &r["latency_ms"];
    line(
        "latency",
        format!(
            "p50 {} ms  p90 {} ms  p99 {} ms  p99.9 {} ms  max {} ms  (mean {} ms)",
            l["p50"], l["p90"], l["p99"], l["p99_9"], l["max"], l["mean"]
        ),
    );
    match r["errors"].as_object().filter(|e| !e.is_empty()) {
        None => line("errors", "none".into()),
        Some(errors) => {
            let kinds: Vec<String> = errors.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            line("errors", format!("{} of {}: {}", r["failed"], r["requests"], kinds.join(", ")));
            if let Some(e) = first_error {
                line("first", e.to_owned());
            }
        }
    }
}
