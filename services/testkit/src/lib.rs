//! The integration-test harness, shared by every service's `tests/`.
//!
//! Everything is real: Apache Kafka (one broker for the test run, which
//! `scripts/test.sh` starts; topics of its own for each test), Redis and
//! Traefik as child processes on free ports of 127.0.0.1, and the services
//! in the test process on listeners bound to port 0. Each test starts its
//! own [`Stack`], so no test depends on another's state; dropping it stops
//! everything.
//!
//! - [`tools`]: where the installed tools are (`RILL_*_BIN`).
//! - [`process`]: child processes that die with the test, free ports.
//! - [`service`]: a service binary run as a process.
//! - [`broker`]: a test's topics on the run's Kafka, or a broker of its own.
//! - [`traefik`]: Traefik with the project's local config.
//! - [`cassandra`]: a Cassandra node of a test's own, to kill and restart.
//! - [`certs`]: a CA and server certificate of a test's own, for TLS links.
//! - [`store`]: a SQLite file or a Cassandra keyspace of the test's own.
//! - [`stack`]: broker + edges + Traefik.
//! - [`otlp`]: an OpenTelemetry (OTLP/HTTP) receiver that keeps the spans
//!   the services export, to check traces.
//! - [`client`]: an HTTP client with a cookie jar, WebSocket and SSE
//!   clients that read JSON events.

pub mod broker;
pub mod cassandra;
pub mod certs;
pub mod client;
pub mod otlp;
pub mod process;
pub mod redis;
pub mod service;
pub mod stack;
pub mod store;
pub mod tools;
pub mod traefik;

pub use client::{Client, SseClient, WsClient};
pub use stack::{Stack, TEST_API_KEY, auth_env, test_token};
