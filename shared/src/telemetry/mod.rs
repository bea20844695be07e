//! Logging. JSON lines (CloudWatch and Vercel both index JSON) when stderr is not a terminal, readable text when
//! it is; `LOG_FORMAT=json` or `LOG_FORMAT=text` chooses either way. Each line carries the request's span fields.
//! JSON lines come from [`json_lines`], built for a line per request at the lowest cost.

mod json_lines;

use std::io::IsTerminal as _;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The two log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `LOG_FORMAT` wins; otherwise text for a person at a terminal, JSON for everything else (platform log
    /// collectors, pipes, files).
    pub fn choose(setting: Option<&str>, stderr_is_terminal: bool) -> Self {
        match setting.map(str::to_ascii_lowercase).as_deref() {
            Some("json") => Self::Json,
            Some("text") => Self::Text,
            _ if stderr_is_terminal => Self::Text,
            _ => Self::Json,
        }
    }
}

/// Installs the global subscriber once; later calls (tests that build several apps) are no-ops.
pub fn init() {
    // `Targets` reads RUST_LOG's `level` and `target=level` forms without a regex engine in every function.
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let setting = std::env::var("LOG_FORMAT").ok();
    let format = LogFormat::choose(setting.as_deref(), std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_span_events(FmtSpan::NONE)
            .with_writer(std::io::stderr)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry().with(filter).with(json_lines::JsonLines::stderr()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn text_at_a_terminal_json_elsewhere_and_the_setting_wins() {
        assert_eq!(LogFormat::choose(None, true), LogFormat::Text);
        assert_eq!(LogFormat::choose(None, false), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("JSON"), true), LogFormat::Json);
        assert_eq!(LogFormat::choose(Some("text"), false), LogFormat::Text);
    }
}
