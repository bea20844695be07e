//! `cloudagent export audit|tasks`: the last N days of the audit trail or the tenant's tasks, page after page,
//! written as each page arrives (JSON lines or CSV with a header) so an export of any size runs in constant
//! memory; a count on stderr shows progress on a terminal.

use std::io::{IsTerminal as _, Write as _};

use reqwest::Method;
use serde_json::Value;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum What {
    /// The audit trail (`audit:read`).
    Audit,
    /// The tenant's tasks (`task:read`).
    Tasks,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    what: What,
    /// How many days back (from now).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    #[command(flatten)]
    target: crate::operator::Target,
}

const AUDIT_COLUMNS: &[&str] = &[
    "id",
    "at_ms",
    "request_id",
    "actor",
    "role",
    "method",
    "route",
    "status",
    "duration_ms",
    "client_ip",
    "country",
    "task_type",
];
const TASK_COLUMNS: &[&str] = &[
    "id",
    "type",
    "status",
    "priority",
    "mode",
    "attempts",
    "created_ms",
    "started_ms",
    "finished_ms",
    "duration_ms",
    "created_by",
];

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
pub(crate) fn field(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let since_ms = i64::try_from(now_ms)? - i64::from(args.days) * 86_400_000;
    let (path, items, columns): (String, &str, &[&str]) = match args.what {
        What::Audit => {
            let from = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(since_ms) * 1_000_000)?
                .format(&time::format_description::well_known::Rfc3339)?;
            (format!("/api/v1/audit?from={}", crate::operator::urlencoding(&from)), "records", AUDIT_COLUMNS)
        }
        What::Tasks => ("/v3/tasks?limit=100".to_owned(), "tasks", TASK_COLUMNS),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if matches!(args.format, Format::Csv) {
        writeln!(out, "{}", columns.join(","))?;
    }
    let progress = std::io::stderr().is_terminal();
    let mut written = 0_usize;
    let mut cursor: Option<String> = None;
    'pages: loop {
        let page_path = match &cursor {
            Some(c) => format!("{path}&cursor={}", crate::operator::urlencoding(c)),
            None => path.clone(),
        };
        let (_, page) = client.send_json(Method::GET, &page_path, None, false).await?;
        for item in page[items].as_array().into_iter().flatten() {
            // Tasks come newest first: the first one older than the window ends the export.
            if matches!(args.what, What::Tasks) && item["created_ms"].as_i64().is_some_and(|at| at < since_ms) {
                break 'pages;
            }
            match args.format {
                Format::Json => writeln!(out, "{item}")?,
                Format::Csv => {
                    let row: Vec<String> = columns.iter().map(|c| field(&item[*c])).collect();
                    writeln!(out, "{}", row.join(","))?;
                }
            }
            written += 1;
        }
        out.flush()?;
        if progress {
            eprint!("\rcloudagent: exported {written}");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    out.flush()?;
    if progress {
        eprintln!();
    }
    eprintln!("cloudagent: exported {written} {items} of the last {} day(s)", args.days);
    Ok(())
}
