//! Log output on stderr: human-readable lines (the default), or with `LOG_FORMAT=json` one JSON
//! object per line carrying the fields of every span the event happened in, flattened next to
//! its own (so each line a request causes has the request's `request_id` at the top level).
//! `timestamp`, `level` and `target` come first; the other fields follow by name.

use std::fmt;

use chrono::SecondsFormat;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing's human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl LogFormat {
    /// `text` (also when unset or empty) or `json`.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw.map(str::trim) {
            None | Some("" | "text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("LOG_FORMAT must be text or json, not {other:?}")),
        }
    }

    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var("LOG_FORMAT").ok().as_deref())
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info,sqlx=warn`).
/// Installs the subscriber; `default_filter` applies when RUST_LOG is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Span fields are stored as JSON objects, which `JsonLines` merges into each line.
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .init(),
    }
}

/// `{"timestamp", "level", "target", "spans", <span fields, outermost first>, "message",
/// <event fields>}`: an event's own field wins over a span's of the same name.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        // Fixed fields first, for people reading the raw lines; the rest by name.
        let now = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let head = [
            ("timestamp", Value::from(now)),
            ("level", meta.level().as_str().into()),
            ("target", meta.target().into()),
        ];
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            let mut names = Vec::new();
            for span in scope.from_root() {
                names.push(span.name());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str(&fields.fields) {
                    line.extend(fields);
                }
            }
            line.insert("spans".into(), names.join(":").into());
        }
        event.record(&mut FieldsInto(&mut line));
        // These names are the line's own: a field so named is dropped rather than repeated.
        for (key, _) in &head {
            line.remove(*key);
        }
        let mut text = String::from("{");
        let fields = head
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(line.iter().map(|(k, v)| (k.as_str(), v)));
        for (i, (key, value)) in fields.enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(key).map_err(|_| fmt::Error)?);
            text.push(':');
            text.push_str(&serde_json::to_string(value).map_err(|_| fmt::Error)?);
        }
        text.push('}');
        writeln!(writer, "{text}")
    }
}

/// Records an event's fields into the line, as JSON numbers, booleans or strings.
struct FieldsInto<'a>(&'a mut Map<String, Value>);

impl FieldsInto<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for FieldsInto<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_flatten_the_spans_fields() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("request", request_id = "r-1", level = "span's");
            let _outer = outer.enter();
            let inner = tracing::info_span!("job", customer_id = "c-9");
            let _inner = inner.enter();
            tracing::warn!(n = 3, ok = true, why = %"a \"quoted\" reason", "it {}", "happened");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with(r#"{"timestamp":""#), "{text}");
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["level"], "WARN", "a field named level is not repeated");
        assert_eq!(line["message"], "it happened");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["customer_id"], "c-9");
        assert_eq!(line["spans"], "request:job");
        assert_eq!(
            (line["n"].clone(), line["ok"].clone()),
            (3.into(), true.into())
        );
        assert_eq!(line["why"], r#"a "quoted" reason"#);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
    }

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        assert!(LogFormat::parse(Some("JSONL"))
            .unwrap_err()
            .contains("text or json"));
    }
}
