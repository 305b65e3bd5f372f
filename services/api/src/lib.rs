//! The api: REST for users, profiles, memberships and message history.
//!
//! Reads come from the store; writes go through Kafka (the directory topic)
//! and the persistence consumer, and the api answers once the store shows
//! them (see [`directory`]).
//!
//! - [`routes`]: the route table; [`handlers`]: one file per resource.
//! - [`directory`]: publishing directory events and waiting for them.
//! - [`query`]: query parameters; [`error`]: errors to statuses.
//! - [`server`]: the HTTP server, which logs failed connections by cause.
//! - [`ops`]: the live operations page and its stream.
//! - [`settings`], [`state`], [`metrics`].
//!
//! The OpenAPI document is `openapi.json`, served at `/api/openapi.json`.

pub mod access;
pub mod directory;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;

pub use settings::ApiSettings;

use crate::directory::Directory;
use crate::metrics::ApiMetrics;
use crate::state::ApiState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error("cannot reach Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot reach Redis: {0}")]
    Sessions(#[from] rill_sessions::SessionsError),
    #[error(transparent)]
    Settings(#[from] rill_runtime::SettingsError),
}

/// Opens the store and serves the api on `listener` until `shutdown`.
pub async fn run(
    settings: ApiSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let metrics = Arc::new(ApiMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let store = rill_store::open(&settings.store).await?;
    let producer = rill_runtime::kafka::producer(&settings.kafka, "rill-api")?;
    let directory = Directory::new(
        producer,
        settings.kafka.directory_topic.clone(),
        settings.kafka.message_timeout_ms,
        store.clone(),
        settings.consistency_timeout_ms,
        metrics.clone(),
    );
    let redis = rill_sessions::connect(&settings.redis).await?;
    let prefix = &settings.redis.key_prefix;
    let live =
        rill_sessions::LiveSessions::new(redis.clone(), prefix, settings.redis.session_ttl_secs);
    let cookies = rill_runtime::session_cookie::SessionCookies::new(&settings.session)?;
    let ops = ops::Collector::spawn(
        settings.ops.clone(),
        redis.clone(),
        store.clone(),
        shutdown.clone(),
    );
    let logins = rill_sessions::Logins::new(redis, prefix, cookies.ttl());
    let api_keys = rill_auth::api_key::ApiKeys::new(&settings.api_keys)?;
    // A bucket for each configured key: the limiter never has to drop one.
    let api_key_calls = rill_runtime::rate_limit::KeyedLimiter::new(
        settings.limits.calls_per_api_key,
        settings.api_keys.keys.len().max(1),
    );
    let signups = rill_runtime::rate_limit::KeyedLimiter::new(
        settings.limits.signups_per_address,
        settings.limits.max_rate_limited_addresses,
    );
    let passwords = rill_auth::password::Passwords::new(&settings.password)?;
    let producer = rill_runtime::kafka::producer(&settings.kafka, "rill-api-push")?;
    let state = Arc::new(ApiState {
        settings,
        directory,
        live,
        logins,
        cookies,
        api_keys,
        api_key_calls,
        signups,
        passwords,
        producer,
        metrics,
        ops,
    });
    let registry = Arc::new(registry);
    let ready_token = shutdown.clone();
    let ready = Arc::new(move || !ready_token.is_cancelled());
    let deadlines = rill_runtime::http_deadlines::Deadlines {
        header_read: state.settings.limits.header_read_timeout_secs,
        idle: state.settings.limits.idle_timeout_secs,
        body_read: state.settings.limits.body_read_timeout_secs,
    };
    server::serve(
        routes::all(state, registry, ready),
        listener,
        shutdown,
        deadlines,
    )
    .await;
    Ok(())
}
