//! Structured logs through `tracing`, and OpenTelemetry traces.
//!
//! The OpenTelemetry layer is always installed, so that every span has a
//! real trace id and the W3C trace context can travel through Kafka even
//! when nothing collects the traces; spans are exported over OTLP
//! (HTTP/protobuf, in batches) only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The exporter reads the
//! other `OTEL_*` variables of the specification itself (headers, timeout,
//! `OTEL_BSP_*` batching, `OTEL_TRACES_SAMPLER`). Each process's spans
//! carry `service.name` (`rill-edge`, …) and `service.instance.id` (the
//! node, as in the log lines).
//!
//! Logs are JSON lines ([`json_lines`]: one object per event with the
//! service, the node and the trace id) or, for people, text.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

pub mod json_lines;

/// The environment variable, named by the OpenTelemetry specification, that
/// turns trace export on: the base URL of an OTLP/HTTP receiver (traces go
/// to its `/v1/traces`), e.g. `http://otel-collector:4318`.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The same for traces only, and used as it is (no `/v1/traces` added);
/// it also turns export on.
pub const OTLP_TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// How long the test telemetry's exporter gathers spans before it sends
/// them (the specification's default, for services, is 5 s).
const TEST_EXPORT_DELAY: Duration = Duration::from_millis(100);

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
        let provider = tracer_provider(service, Export::from_env())?;
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
        Self::init_for_tests_once(None);
    }

    /// For tests that check spans: as [`Telemetry::init_for_tests`], and
    /// the process's spans (service `rill-test`) are exported over
    /// OTLP/HTTP to `endpoint` (its `/v1/traces`) within about 100 ms.
    /// Panics if this process's test telemetry was installed first without
    /// that endpoint: call it before anything else starts telemetry.
    pub fn init_for_tests_exporting_to(endpoint: &str) {
        let installed = Self::init_for_tests_once(Some(endpoint));
        assert_eq!(
            installed,
            Some(endpoint),
            "test telemetry was installed before, not exporting to {endpoint}"
        );
    }

    /// Installs the test telemetry on the first call; the endpoint it
    /// exports to, if any.
    fn init_for_tests_once(endpoint: Option<&str>) -> Option<&'static str> {
        static INSTALLED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let installed = INSTALLED.get_or_init(|| {
            Self::install_for_tests(endpoint);
            endpoint.map(str::to_owned)
        });
        installed.as_deref()
    }

    fn install_for_tests(endpoint: Option<&str>) {
        let export = match endpoint {
            Some(endpoint) => Export::To(format!("{}/v1/traces", endpoint.trim_end_matches('/'))),
            None => Export::Nowhere,
        };
        let provider = match tracer_provider("rill-test", export) {
            Ok(provider) => provider,
            Err(err) => panic!("test telemetry: {err}"),
        };
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("rill-test"))
            .with_filter(SPAN_LEVEL);
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
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

/// Where spans go.
enum Export {
    /// Nowhere: spans only give the trace context to records and log lines.
    Nowhere,
    /// Where the `OTEL_*` variables say, batched as they say.
    Env,
    /// To this OTLP/HTTP traces URL, every [`TEST_EXPORT_DELAY`] (tests).
    To(String),
}

impl Export {
    fn from_env() -> Self {
        let set = |var| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        match set(OTLP_ENDPOINT_VAR) || set(OTLP_TRACES_ENDPOINT_VAR) {
            true => Self::Env,
            false => Self::Nowhere,
        }
    }
}

fn tracer_provider(
    service: &'static str,
    export: Export,
) -> Result<SdkTracerProvider, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.instance.id", node_name()))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    match export {
        Export::Nowhere => {}
        Export::Env => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()?;
            builder = builder.with_batch_exporter(exporter);
        }
        Export::To(url) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .build()?;
            let config = BatchConfigBuilder::default()
                .with_scheduled_delay(TEST_EXPORT_DELAY)
                .build();
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build();
            builder = builder.with_span_processor(processor);
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}
