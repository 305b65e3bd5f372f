//! Structured logs through `tracing`, and OpenTelemetry traces.
//!
//! The OpenTelemetry layer is always installed, so that every span has a
//! real trace id and the W3C trace context can travel through Kafka even
//! when nothing collects the traces; spans are exported over OTLP
//! (HTTP/protobuf) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Logs are JSON lines ([`json_lines`]: one object per event with the
//! service, the node and the trace id) or, for people, text.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

pub mod json_lines;

/// The environment variable, named by the OpenTelemetry specification, that
/// turns trace export on.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Spans at this level and above become OpenTelemetry spans, whatever the
/// log filter says: quieter logs must not break trace propagation.
const SPAN_LEVEL: LevelFilter = LevelFilter::INFO;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("bad telemetry.log_filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Installs the global subscriber and propagator for `service`.
    pub fn init(
        service: &'static str,
        settings: &TelemetrySettings,
    ) -> Result<Self, TelemetryError> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
            _ => EnvFilter::try_new(&settings.log_filter)?,
        };
        let provider = tracer_provider(service)?;
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_filter(SPAN_LEVEL);
        let fmt = match settings.log_format {
            LogFormat::Json => {
                json_lines::JsonLines::new(service, node_name(), std::io::stdout).boxed()
            }
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .boxed(),
        };
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .with(otel)
            .try_init()?;
        Ok(Self { provider })
    }

    /// For tests: installs telemetry once per process, with text logs that
    /// the test harness captures. Later calls do nothing.
    pub fn init_for_tests() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let provider = match tracer_provider("rill-test") {
                Ok(provider) => provider,
                Err(err) => panic!("test telemetry: {err}"),
            };
            let otel = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("rill-test"))
                .with_filter(SPAN_LEVEL);
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
            let fmt = tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(filter);
            // Another harness may have installed a subscriber first; then
            // that one stays, which is fine for tests.
            let _ = tracing_subscriber::registry()
                .with(fmt)
                .with(otel)
                .try_init();
            // Keep the provider for the life of the test process.
            std::mem::forget(provider);
        });
    }

    /// Flushes and stops trace export.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "trace export did not shut down cleanly");
        }
    }
}

/// Which process this is, for the `node` of every log line: the
/// `RILL_NODE_ID` variable (the edge's node id; the chart sets it to the
/// pod's name), else `HOSTNAME` (in Kubernetes, the pod's name), else the
/// kernel's host name.
fn node_name() -> String {
    ["RILL_NODE_ID", "HOSTNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .chain(std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if std::env::var_os(OTLP_ENDPOINT_VAR).is_some_and(|v| !v.is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}
