//! An OpenTelemetry receiver for tests: an OTLP/HTTP endpoint
//! (`POST /v1/traces`, protobuf `ExportTraceServiceRequest` decoded with the
//! `opentelemetry-proto` types) that keeps every span it is sent, with the
//! service and instance of the process that sent it, so that a test can
//! check the parent/child links and span links of a trace.
//!
//! Service processes export to it when started with [`OtlpReceiver::env`];
//! the test process itself with
//! `rill_runtime::telemetry::Telemetry::init_for_tests_exporting_to`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use warp::Filter as _;
use warp::http::StatusCode;
use warp::reply::Response;

/// How long a service process gathers spans before it sends them (the
/// specification's default is 5 s): `OTEL_BSP_SCHEDULE_DELAY`, in ms.
const PROCESS_EXPORT_DELAY_MS: &str = "100";

/// One span as a receiver got it. Ids are lower-case hex, as in a
/// `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it (`rill-edge`, …;
    /// `rill-test` for the test process).
    pub service: String,
    /// Its `service.instance.id`: the node (`RILL_NODE_ID`, else the host).
    pub instance: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// None for a root span.
    pub parent_span_id: Option<String>,
    /// The (trace id, span id) of each span this one links to.
    pub links: Vec<(String, String)>,
    /// Its attributes (the `tracing` span's fields), as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether this span links to `other`.
    pub fn links_to(&self, other: &ReceivedSpan) -> bool {
        self.links
            .iter()
            .any(|(trace, span)| *trace == other.trace_id && *span == other.span_id)
    }
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    /// Requests it could not decode: a test that reads spans fails on any.
    errors: Vec<String>,
}

/// A running receiver; it stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port of 127.0.0.1, on a thread and
    /// runtime of its own (so that it outlives any test's runtime).
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("receiver addr");
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let kept = received.clone();
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("receiver listener");
                    let traces = warp::post()
                        .and(warp::path!("v1" / "traces"))
                        .and(warp::header::optional::<String>("content-type"))
                        .and(warp::body::bytes())
                        .map(move |content_type: Option<String>, body: Bytes| {
                            export(&kept, content_type.as_deref(), body)
                        });
                    warp::serve(traces)
                        .incoming(listener)
                        .graceful(async {
                            let _ = stopped.await;
                        })
                        .run()
                        .await;
                });
            })
            .expect("start the receiver thread");
        Self {
            addr,
            received,
            stop: Some(stop),
        }
    }

    /// One receiver for the whole test process, started on first use: the
    /// one the test process's own telemetry exports to, since that is
    /// installed once per process.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<OtlpReceiver> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// The base URL to give as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that makes a service process export its spans here,
    /// every 100 ms. `service::spawn` clears `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// and then adds the given environment, so these win.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (rill_runtime::telemetry::OTLP_ENDPOINT_VAR, self.endpoint()),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                PROCESS_EXPORT_DELAY_MS.to_owned(),
            ),
        ]
    }

    /// Every span received so far. Panics if a request could not be
    /// decoded.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let received = self.received.lock().expect("receiver lock");
        assert!(
            received.errors.is_empty(),
            "the OTLP receiver got requests it could not decode: {:?}",
            received.errors
        );
        received.spans.clone()
    }

    /// Waits until a received span satisfies `found`; panics after
    /// `timeout`, naming `what` and listing the spans that did arrive.
    pub async fn wait_for_span(
        &self,
        what: &str,
        timeout: Duration,
        found: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if let Some(span) = spans.iter().find(|s| found(s)) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {what} after {timeout:?}; received:\n{}",
                describe(&spans)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One line per span: service, instance, name, ids, parent, links.
pub fn describe(spans: &[ReceivedSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {}/{} {:?} trace {} span {} parent {:?} links {:?} {:?}",
                s.service,
                s.instance,
                s.name,
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.links,
                s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Handles one export request: 200 with an empty protobuf answer once its
/// spans are kept; 400 or 415 (and an error recorded) otherwise.
fn export(received: &Mutex<Received>, content_type: Option<&str>, body: Bytes) -> Response {
    let decoded = match content_type {
        Some("application/x-protobuf") => {
            ExportTraceServiceRequest::decode(body).map_err(|err| err.to_string())
        }
        other => Err(format!(
            "content type {other:?}, not application/x-protobuf"
        )),
    };
    let mut received = received.lock().expect("receiver lock");
    match decoded {
        Ok(request) => {
            received.spans.extend(spans_of(request));
            let mut response =
                Response::new(ExportTraceServiceResponse::default().encode_to_vec().into());
            response.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/x-protobuf"),
            );
            response
        }
        Err(err) => {
            received.errors.push(err);
            let mut response = Response::new("cannot decode".into());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        let instance = resource
            .get("service.instance.id")
            .cloned()
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            spans.push(ReceivedSpan {
                service: service.clone(),
                instance: instance.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: (!span.parent_span_id.is_empty())
                    .then(|| hex(&span.parent_span_id)),
                links: span
                    .links
                    .iter()
                    .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                    .collect(),
                attributes: attributes(&span.attributes),
            });
        }
    }
    spans
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
