//! The JSON log format (`telemetry.log_format = "json"`): one JSON object
//! per event, on one line, so that a log collector needs no multi-line
//! rules. Each line carries
//!
//! - `timestamp` (RFC 3339, UTC), `level`, `target`, `message`;
//! - `service` (`rill-edge`, ...) and `node` (which process: the pod);
//! - `trace_id` and `span_id` of the OpenTelemetry span the event happened
//!   in, when there is one: the trace id a send carries through Kafka
//!   (`trace_context.rs`), so one `jq` filter follows a message from the
//!   edge that took it to every edge that delivered it and to persist;
//! - `span`, the innermost span's name, and the fields of the event and of
//!   every span around it (inner ones win on a shared name).
//!
//! Secrets: the settings keep them in [`crate::Secret`], whose `Debug`
//! prints `[redacted]`, and no event logs settings. As a second line of
//! defence, a field named like a secret (see [`is_secret_name`]) is written
//! as `[redacted]` whatever it holds.
//!
//! tracing-subscriber's own JSON format cannot add the trace id (it does
//! not know OpenTelemetry), hence this layer.

use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Keys every line has; an event or span field of the same name is
/// overwritten by them, so that they can be trusted.
const RESERVED: [&str; 8] = [
    "timestamp",
    "level",
    "target",
    "service",
    "node",
    "span",
    "trace_id",
    "span_id",
];

/// What a field named like a secret is written as.
pub const REDACTED: &str = "[redacted]";

/// Whether a field's name says it holds a secret: it ends with one of
/// these words (`password`, `db_password`, `session_cookie`, ...).
pub fn is_secret_name(name: &str) -> bool {
    const SECRET_WORDS: [&str; 6] = [
        "password",
        "secret",
        "token",
        "cookie",
        "authorization",
        "api_key",
    ];
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.ends_with(word))
}

/// The layer; `writer` makes where each line goes (stdout in a service).
pub struct JsonLines<W> {
    service: &'static str,
    node: String,
    writer: W,
    /// The subscriber this layer is part of, to ask the OpenTelemetry
    /// layer for a span's context.
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> std::fmt::Debug for JsonLines<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines")
            .field("service", &self.service)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl<W> JsonLines<W> {
    pub fn new(service: &'static str, node: String, writer: W) -> Self {
        Self {
            service,
            node,
            writer,
            dispatch: OnceLock::new(),
        }
    }

    /// The trace and span ids of the innermost span of `spans` (leaf first)
    /// that has a valid OpenTelemetry context.
    fn trace_ids(&self, spans: &[Id]) -> Option<(String, String)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        spans.iter().find_map(|id| {
            let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid()
                .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        })
    }
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(Map<String, Value>);

/// Records fields into a JSON object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let value = if is_secret_name(field.name()) {
            Value::from(REDACTED)
        } else {
            value
        };
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, as STYLE.md asks of logged errors.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.put(field, Value::from(text));
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Fields(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        // Span fields first (root to leaf), then the event's: inner wins.
        let mut spans = Vec::new(); // leaf first
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.clone());
                }
                innermost = Some(span.name());
                spans.insert(0, span.id());
            }
        }
        event.record(&mut Fields(&mut line));
        let meta = event.metadata();
        // Records of the `log` crate (librdkafka's, through rdkafka) come
        // with target `log`: their own target is a field.
        let target = match line.remove("log.target") {
            Some(Value::String(target)) => target,
            _ => meta.target().to_owned(),
        };
        for key in ["log.file", "log.line", "log.module_path"] {
            line.remove(key);
        }
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
        let mut fixed = Map::new();
        fixed.insert("timestamp".into(), timestamp.into());
        fixed.insert("level".into(), meta.level().as_str().into());
        fixed.insert("target".into(), target.into());
        fixed.insert("service".into(), self.service.into());
        fixed.insert("node".into(), self.node.clone().into());
        if let Some(name) = innermost {
            fixed.insert("span".into(), name.into());
        }
        // After the extensions' guards are gone: the OpenTelemetry layer
        // locks them again.
        if let Some((trace_id, span_id)) = self.trace_ids(&spans) {
            fixed.insert("trace_id".into(), trace_id.into());
            fixed.insert("span_id".into(), span_id.into());
        }
        for key in RESERVED {
            line.remove(key);
        }
        fixed.extend(line);
        let Ok(mut bytes) = serde_json::to_vec(&Value::Object(fixed)) else {
            return;
        };
        bytes.push(b'\n');
        // One write per line, so that lines of concurrent events do not
        // interleave. A log that cannot be written has nowhere to go.
        let _ = self.writer.make_writer_for(meta).write_all(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Where the test's lines go.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        /// Each line, parsed; fails unless every line is one JSON object.
        fn lines(&self) -> Vec<Map<String, Value>> {
            let bytes = self.0.lock().expect("buffer").clone();
            let text = String::from_utf8(bytes).expect("UTF-8");
            assert!(text.ends_with('\n'), "{text}");
            text.lines()
                .map(|line| match serde_json::from_str(line) {
                    Ok(Value::Object(object)) => object,
                    other => panic!("not one JSON object per line: {line}: {other:?}"),
                })
                .collect()
        }
    }

    /// Runs `f` with this layer (and OpenTelemetry's) as the subscriber.
    fn capture(f: impl FnOnce()) -> Vec<Map<String, Value>> {
        let buffer = Buffer::default();
        let provider = SdkTracerProvider::builder().build();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLines::new("rill-test", "node-7".into(), move || {
                writer.clone()
            }))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
        buffer.lines()
    }

    #[test]
    fn an_event_in_a_span_is_one_line_with_its_trace_id_node_and_fields() {
        let mut trace_id = String::new();
        let lines = capture(|| {
            let span = tracing::info_span!(
                "send message",
                user_id = "u1",
                message_id = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("message_id", "m1");
            trace_id = span.context().span().span_context().trace_id().to_string();
            tracing::warn!(
                attempt = 2,
                error = "broker down\nsecond line",
                "send failed"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["message"], "send failed");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["service"], "rill-test");
        assert_eq!(line["node"], "node-7");
        assert_eq!(line["span"], "send message");
        assert_eq!(line["user_id"], "u1");
        assert_eq!(line["message_id"], "m1", "a field recorded later is there");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["error"], "broker down\nsecond line");
        assert_eq!(trace_id.len(), 32);
        assert_eq!(line["trace_id"], trace_id.as_str());
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line:?}"
        );
    }

    #[test]
    fn a_trace_continued_from_kafka_headers_keeps_its_id() {
        // As from_kafka.rs does with the sender's `traceparent`.
        let remote = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("trace id"),
            SpanId::from_hex("00f067aa0ba902b7").expect("span id"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let lines = capture(|| {
            let span = tracing::info_span!("deliver");
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
            span.in_scope(|| {
                let inner = tracing::info_span!("inner", profile_id = "p1");
                inner.in_scope(|| tracing::info!("delivered"));
            });
        });
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(lines[0]["span"], "inner");
        assert_eq!(lines[0]["profile_id"], "p1");
    }

    #[test]
    fn an_event_outside_spans_has_no_trace_id_and_fields_cannot_forge_the_fixed_keys() {
        let lines = capture(|| tracing::info!(node = "forged", count = 3_u64, "started"));
        let line = &lines[0];
        assert!(!line.contains_key("trace_id"), "{line:?}");
        assert!(!line.contains_key("span"), "{line:?}");
        assert_eq!(line["node"], "node-7");
        assert_eq!(line["count"], 3);
    }

    #[test]
    fn fields_named_like_secrets_are_redacted() {
        let key = crate::Secret::new("hunter2-key");
        let lines = capture(|| {
            tracing::info!(
                password = "hunter2",
                session_cookie = "abc",
                connection_token = "eyJ",
                api_key = "rk_1",
                settings_key = ?key,
                user_id = "u1",
                "login"
            );
        });
        let text = serde_json::to_string(&lines[0]).expect("json");
        for secret in ["hunter2", "abc", "eyJ", "rk_1"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(lines[0]["password"], REDACTED);
        assert_eq!(lines[0]["settings_key"], "Secret([redacted])");
        assert_eq!(lines[0]["user_id"], "u1");
        assert!(!is_secret_name("key") && !is_secret_name("token_kid"));
    }
}
