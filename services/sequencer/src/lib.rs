//! The sequencer: gives every profile one order.
//!
//! Edges produce chat messages to the message topic keyed by sender, so a
//! profile's messages are spread over its partitions. The sequencer, a
//! consumer group over that topic, copies each message to the sequenced
//! topic, into the one partition that orders its profile
//! (`rill_domain::ordering_partition`); the offset there is the message's
//! position. Each batch is one Kafka transaction that also commits the
//! batch's input offsets: a crash anywhere replays the batch, and readers
//! (`isolation.level=read_committed`) never see a copy twice.
//!
//! - [`sequencer`]: the read, copy, commit loop.
//! - [`settings`], [`metrics`].

pub mod metrics;
pub mod sequencer;
pub mod settings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use warp::Filter;

pub use settings::SequencerSettings;

use crate::metrics::SequencerMetrics;
use crate::sequencer::{Sequencer, SequencerError};

/// Joins the consumer group, opens the transactional producer, and copies
/// messages until `shutdown`, serving the operations endpoints on
/// `listener`. An error that leaves the sequencer unable to go on (it was
/// fenced twice within minutes: another instance runs with its
/// transactional id) ends it: its supervisor starts it again.
pub async fn run(
    settings: SequencerSettings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), SequencerError> {
    let metrics = Arc::new(SequencerMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let sequencer = {
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || Sequencer::start(settings, metrics))
            .await
            .map_err(|_| SequencerError::Stopped)??
    };
    let running = Arc::new(AtomicBool::new(true));
    let (done, outcome) = tokio::sync::oneshot::channel();
    {
        let running = running.clone();
        let shutdown = shutdown.clone();
        // librdkafka's transactional calls block: the loop has a thread
        // of its own.
        std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || {
                let result = sequencer.run(&shutdown);
                running.store(false, Ordering::Release);
                shutdown.cancel();
                let _ = done.send(result);
            })
            .map_err(|_| SequencerError::Stopped)?;
    }
    let ready_token = shutdown.clone();
    let ready = Arc::new(move || !ready_token.is_cancelled() && running.load(Ordering::Acquire));
    let routes =
        rill_runtime::ops::routes(Arc::new(registry), ready).recover(rill_runtime::ops::recover);
    rill_runtime::ops::serve(routes, listener, shutdown).await;
    outcome.await.unwrap_or(Err(SequencerError::Stopped))
}
