//! What every Rill service shares, so that each service's own crate holds
//! only what is particular to it.
//!
//! - [`settings`]: layered typed settings (defaults, file, environment) and
//!   the sections every service has ([`KafkaSettings`], [`TelemetrySettings`]);
//!   [`Secret`] keeps secrets out of `Debug` output.
//! - [`telemetry`]: structured `tracing` logs and OpenTelemetry traces (OTLP
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set).
//! - [`session_cookie`]: the signed session cookie, issued at login and
//!   checked by every stream and send.
//! - [`trace_context`]: the W3C `traceparent` in Kafka record headers.
//! - [`json_body`]: JSON request bodies, content type checked.
//! - [`kafka`]: producer and consumer configuration, topic creation.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics` as warp filters.
//! - [`http_deadlines`]: a connection's header-read and idle deadlines.
//! - [`rate_limit`]: token buckets, alone and by key.
//! - [`shutdown`]: SIGTERM and Ctrl-C as a cancellation token.
//! - [`clock`]: the wall clock in milliseconds, as records carry it.
//! - [`backoff`]: the pause between retries, doubling to a maximum.
//! - [`internal_events`]: events that are both a metric and a log line.

pub mod backoff;
pub mod clock;
pub mod http_deadlines;
pub mod internal_events;
pub mod json_body;
pub mod kafka;
pub mod ops;
pub mod origin;
pub mod rate_limit;
pub mod session_cookie;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub use settings::{KafkaSettings, Secret, SettingsError, TelemetrySettings, Topic};
