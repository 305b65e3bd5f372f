//! The W3C trace context (`traceparent`, `tracestate`) in Kafka record
//! headers, so that one trace covers a send, its trip through Kafka and its
//! delivery on every edge.
//!
//! Every record Rill writes carries the context of the span that wrote it
//! ([`current_headers`]); a consumer continues it as the parent of the span
//! that handles the record ([`set_parent_from`]), or, handling many records
//! at once, links its span to each of them ([`link_from`]).

use opentelemetry::propagation::{Extractor, Injector};
/// One record's place in a trace, as [`link_from`] finds it.
pub use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TraceContextExt as _;
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";

/// Headers carrying the context of the current `tracing` span.
pub fn current_headers() -> OwnedHeaders {
    let context = tracing::Span::current().context();
    let mut fields = HeaderFields::default();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut fields));
    fields
        .0
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

/// Makes the trace context found in `headers` (if any) the parent of `span`.
pub fn set_parent_from(span: &tracing::Span, headers: Option<&BorrowedHeaders>) {
    let Some(headers) = headers else { return };
    let parent = extract(headers);
    // A record without a valid context leaves the span a root: nothing to do.
    let _ = span.set_parent(parent);
}

/// The span context found in `headers`, if they carry a valid one: what a
/// span that handles a batch of records links to, one link per record
/// ([`add_links`]).
pub fn link_from(headers: Option<&BorrowedHeaders>) -> Option<SpanContext> {
    let context = extract(headers?);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Links `span` to each of `links`, as one span that handles many records
/// links to the trace of each.
/// OpenTelemetry keeps the first 128 links of a span
/// (`OTEL_SPAN_LINK_COUNT_LIMIT`) and counts the others as dropped.
pub fn add_links(span: &tracing::Span, links: &[SpanContext]) {
    for link in links {
        span.add_link(link.clone());
    }
}

fn extract(headers: &BorrowedHeaders) -> opentelemetry::Context {
    let reader = HeaderReader(headers);
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&reader))
}

#[derive(Default)]
struct HeaderFields(Vec<(String, String)>);

impl Injector for HeaderFields {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct HeaderReader<'a>(&'a BorrowedHeaders);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

/// Whether `value` is a well-formed W3C `traceparent` with a non-zero trace
/// id: `00-<32 hex>-<16 hex>-<2 hex>`.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_well_formed_traceparents() {
        assert!(is_valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent(
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01"
        ));
        assert!(!is_valid_traceparent("garbage"));
    }

    #[test]
    fn a_span_carries_its_trace_id_into_the_headers() {
        crate::telemetry::Telemetry::init_for_tests();
        let span = tracing::info_span!("send");
        let headers = span.in_scope(current_headers);
        let value = headers
            .iter()
            .find(|h| h.key == TRACEPARENT)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("traceparent header present");
        assert!(is_valid_traceparent(&value), "{value}");
    }

    #[test]
    fn a_consumer_continues_or_links_the_trace_of_the_headers() {
        crate::telemetry::Telemetry::init_for_tests();
        let send = tracing::info_span!("send");
        let headers = send.in_scope(current_headers);
        let sent = send.context().span().span_context().clone();

        let link = link_from(Some(headers.as_borrowed())).expect("a span context");
        assert_eq!(link.trace_id(), sent.trace_id());
        assert_eq!(link.span_id(), sent.span_id());
        assert!(link.is_remote());

        let deliver = tracing::info_span!("deliver");
        set_parent_from(&deliver, Some(headers.as_borrowed()));
        let delivered = deliver.context().span().span_context().clone();
        assert_eq!(delivered.trace_id(), sent.trace_id());
        assert_ne!(delivered.span_id(), sent.span_id());
    }

    #[test]
    fn headers_without_a_context_give_no_link() {
        crate::telemetry::Telemetry::init_for_tests();
        assert!(link_from(None).is_none());
        let other = OwnedHeaders::new().insert(Header {
            key: "unrelated",
            value: Some("x"),
        });
        assert!(link_from(Some(other.as_borrowed())).is_none());
        let garbage = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some("00-garbage"),
        });
        assert!(link_from(Some(garbage.as_borrowed())).is_none());
    }
}
