//! JSON log lines, written straight to stderr with one `write` each.
//!
//! The same shape as tracing-subscriber's flattened JSON (`timestamp`, `level`, the event's fields, `target`,
//! and the current span's fields under `span`), at a fraction of its cost: a span's fields are rendered to JSON
//! once, when the span is created or a field is recorded, where the stock formatter stores them as JSON text and
//! parses that text again for every event. Every request writes a line, and on Lambda every byte and on Vercel
//! every CPU microsecond of it is billed.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The layer. Span fields live in the span's extensions, the line buffer in a thread-local.
#[derive(Debug, Default)]
pub(super) struct JsonLines {
    /// A duplicate of the stderr descriptor: writing through it takes no lock, where `std::io::stderr()` takes a
    /// process-wide one that worker threads logging at once contend for (futex calls on every request under
    /// load). One `write` of a whole line stays atomic: the kernel orders writes to one open file, and a pipe
    /// keeps writes up to 4 KiB whole.
    out: Option<std::fs::File>,
}

impl JsonLines {
    /// Writing to this process's stderr (through the shared lock only if the descriptor cannot be duplicated).
    pub(super) fn stderr() -> Self {
        use std::os::fd::AsFd as _;
        Self { out: std::io::stderr().as_fd().try_clone_to_owned().ok().map(std::fs::File::from) }
    }

    fn write(&self, line: &[u8]) {
        let _ = match &self.out {
            Some(file) => (&*file).write_all(line),
            None => std::io::stderr().lock().write_all(line),
        };
    }
}

/// A span's fields as JSON members (`"a":1,"b":"x"`), kept in the span's extensions.
struct SpanFields(Vec<u8>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Members(Vec::with_capacity(160));
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields.0));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(existing)) = extensions.get_mut::<SpanFields>() {
            let mut fields = Members(std::mem::take(existing));
            values.record(&mut fields);
            *existing = fields.0;
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            line.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(line);
            line.extend_from_slice(b"\",\"level\":\"");
            line.extend_from_slice(event.metadata().level().as_str().as_bytes());
            line.push(b'"');
            let mut fields = Members(std::mem::take(line));
            fields.0.push(b',');
            let before = fields.0.len();
            event.record(&mut fields);
            if fields.0.len() == before {
                fields.0.pop();
            }
            *line = fields.0;
            line.extend_from_slice(b",\"target\":");
            string(line, event.metadata().target());
            if let Some(span) = ctx.event_span(event) {
                line.extend_from_slice(b",\"span\":{");
                if let Some(SpanFields(members)) = span.extensions().get::<SpanFields>()
                    && !members.is_empty()
                {
                    line.extend_from_slice(members);
                    line.push(b',');
                }
                line.extend_from_slice(b"\"name\":");
                string(line, span.name());
                line.push(b'}');
            }
            line.extend_from_slice(b"}\n");
            // One write per line, so concurrent requests never interleave within a line.
            self.write(line);
        });
    }
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The second last formatted and its `YYYY-MM-DDTHH:MM:SS` text: reformatted once a second per thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 in UTC with microseconds, like tracing-subscriber's default.
fn timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            text.clear();
            let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(now.as_secs()).unwrap_or(0))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
        }
        out.extend_from_slice(text.as_bytes());
    });
    let mut micros = [0u8; 8];
    let _ = write!(&mut micros[..], ".{:06}Z", now.subsec_micros());
    out.extend_from_slice(&micros);
}

/// A JSON string, escaped by serde_json.
fn string(out: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Writes visited fields as JSON members, comma-separated.
struct Members(Vec<u8>);

impl Members {
    fn key(&mut self, field: &Field) {
        if !matches!(self.0.last(), None | Some(b'{' | b',')) {
            self.0.push(b',');
        }
        string(&mut self.0, field.name());
        self.0.push(b':');
    }
}

impl Visit for Members {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        string(&mut self.0, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.0, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.0.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // serde_json writes non-finite numbers as null: JSON has no NaN.
        let _ = serde_json::to_writer(&mut self.0, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        string(&mut self.0, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        // `message` arrives as format arguments; Debug of `fmt::Arguments` is its Display.
        string(&mut self.0, &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn members_escape_and_separate() {
        let mut line = Vec::new();
        string(&mut line, "a\"b\\c\nd");
        assert_eq!(String::from_utf8(line).unwrap(), r#""a\"b\\c\nd""#);
        let mut stamp = Vec::new();
        timestamp(&mut stamp);
        let text = String::from_utf8(stamp).unwrap();
        assert!(time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).is_ok(), "{text}");
        assert_eq!(text.len(), "2026-11-24T13:40:00.123456Z".len());
    }

    /// Captures the span fields this layer keeps, to check them without capturing stderr.
    #[derive(Clone, Default)]
    struct Spy(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spy {
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let span = ctx.event_span(event).unwrap();
            let fields = String::from_utf8(span.extensions().get::<SpanFields>().unwrap().0.clone()).unwrap();
            self.0.lock().unwrap().push(fields);
        }
    }

    #[test]
    fn span_fields_are_rendered_once_and_late_fields_appended() {
        let spy = Spy::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::default()).with(spy.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1", agent = tracing::field::Empty);
            span.in_scope(|| tracing::info!("first"));
            span.record("agent", "worker \"7\"");
            span.in_scope(|| tracing::info!(status = 200u16, "second"));
        });
        let seen = spy.0.lock().unwrap().clone();
        assert_eq!(seen[0], r#""request_id":"r-1""#);
        assert_eq!(seen[1], r#""request_id":"r-1","agent":"worker \"7\"""#);
        let parsed: serde_json::Value = serde_json::from_str(&format!("{{{}}}", seen[1])).unwrap();
        assert_eq!(parsed["agent"], "worker \"7\"");
    }
}
