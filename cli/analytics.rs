//! `cloudagent analytics`: the tenant's windowed statistics (`GET /api/v1/analytics`) as the route's JSON, as CSV
//! (one row per bucket and task type) or as one self-contained HTML report with inline SVG charts
//! ([`crate::report`]), written to stdout or `--out`.

use std::io::Write as _;

use cloud_agent_sdk::api::analytics::{Analytics, Bucket};
use cloud_agent_sdk::client::AnalyticsQuery;
use serde_json::Value;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    /// The route's JSON, as it answered.
    Json,
    /// RFC 4180 CSV: one row per bucket and task type.
    Csv,
    /// One HTML file with inline SVG charts, readable without a network.
    Html,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AnalyticsArgs {
    /// How many days back (from now): hour buckets up to 31 days, day buckets beyond.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=400))]
    days: u32,
    /// Only this task type's series.
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    target: crate::operator::Target,
}

const COLUMNS: &[&str] = &[
    "bucket_start",
    "type",
    "total",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "error_rate",
    "throughput_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
];

fn number(value: Option<f64>) -> String {
    value.map(|v| format!("{v}")).unwrap_or_default()
}

/// The CSV: a header, then every bucket of every type in time order.
pub(crate) fn csv(analytics: &Analytics) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for series in &analytics.tasks {
        for p in &series.points {
            let kind = crate::export::field(&Value::String(series.kind.clone()));
            let row = [
                p.start.clone(),
                kind,
                p.total.to_string(),
                p.succeeded.to_string(),
                p.failed.to_string(),
                p.timed_out.to_string(),
                p.cancelled.to_string(),
                number(p.error_rate),
                format!("{}", p.throughput_per_s),
                number(p.duration_ms.p50),
                number(p.duration_ms.p95),
                number(p.duration_ms.p99),
                number(p.duration_ms.mean),
            ];
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

pub(crate) async fn analytics(args: AnalyticsArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let now = time::OffsetDateTime::now_utc();
    let rfc3339 = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339);
    let bucket = if args.days <= 31 { Bucket::Hour } else { Bucket::Day };
    // The last N days ending in the current bucket: N × 24 hour buckets (or N day buckets).
    let from = now - time::Duration::seconds(i64::from(args.days) * 86_400 - bucket.seconds());
    let query = AnalyticsQuery { from: Some(rfc3339(from)?), to: Some(rfc3339(now)?), bucket, kind: args.kind.clone() };
    let analytics = client.analytics(&query).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}\n  (analytics needs a key with metrics:read; `cloudagent keys create --role operator` makes one)"
        )
    })?;
    let text = match args.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&analytics)?),
        Format::Csv => csv(&analytics),
        Format::Html => crate::report::html(&analytics, &rfc3339(now)?),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
