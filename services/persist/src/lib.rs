//! The persistence consumer: a Kafka consumer group that writes directory
//! events (users, profiles, memberships) and chat messages to the store.
//! Offsets are committed only after the write succeeded; writes are
//! idempotent, so a replay after a crash changes nothing.
//!
//! - [`consumer`]: the read-write-commit loop.
//! - [`lag`]: how far the group is behind, per topic.
//! - [`settings`], [`metrics`].

pub mod consumer;
pub mod lag;
pub mod metrics;
pub mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use warp::Filter;

pub use settings::PersistSettings;

use crate::consumer::PersistConsumer;
use crate::lag::LagProbe;
use crate::metrics::PersistMetrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error("cannot reach Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Opens the store, joins the consumer group, and serves the operations
/// endpoints on `listener` until `shutdown`.
pub async fn run(
    settings: PersistSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let metrics = Arc::new(PersistMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let store = rill_store::open(&settings.store).await?;
    let probe = LagProbe::new(&settings, lag::topics(&settings), metrics.clone())?;
    tokio::spawn(probe.run(shutdown.clone()));
    let consumer = PersistConsumer::new(settings, store, metrics)?;
    let running = Arc::new(AtomicBool::new(true));
    let consuming = {
        let running = running.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            consumer.run(shutdown).await;
            running.store(false, Ordering::Release);
        })
    };
    let ready_token = shutdown.clone();
    let ready = Arc::new(move || !ready_token.is_cancelled() && running.load(Ordering::Acquire));
    let routes =
        rill_runtime::ops::routes(Arc::new(registry), ready).recover(rill_runtime::ops::recover);
    rill_runtime::ops::serve(routes, listener, shutdown).await;
    let _ = consuming.await;
    Ok(())
}
