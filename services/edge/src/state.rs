//! What the parts of one edge share, built by `app` and read by `app`
//! (serving, the drain) and `routes` (the route table). Nothing below them
//! sees it: the transports get a [`transport::Context`], the sessions their
//! own handles.

use std::sync::Arc;

use rill_runtime::shutdown::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::availability::{Availability, Level};
use crate::kafka_link::KafkaLink;
use crate::metrics::EdgeMetrics;
use crate::session::Sessions;
use crate::settings::EdgeSettings;
use crate::transport;

#[derive(Debug)]
pub struct EdgeState {
    pub settings: EdgeSettings,
    pub edge_id: String,
    pub sessions: Arc<Sessions>,
    pub transport: Arc<transport::Context>,
    pub availability: Arc<Availability>,
    /// Whether Kafka answers.
    pub kafka: Arc<KafkaLink>,
    pub metrics: Arc<EdgeMetrics>,
    /// Cancelled by the shutdown signal: the edge drains from then on.
    pub shutdown: CancellationToken,
    /// Cancelled when the drain is over: the server and its tasks stop.
    pub stop: CancellationToken,
    /// WebSocket sessions and presence joins, which outlive the request
    /// that started them.
    pub tasks: TaskTracker,
}

impl EdgeState {
    /// Ready for new sessions: not draining, available, the recovery
    /// window read back since start-up, and Kafka answering.
    pub fn is_ready(&self) -> bool {
        !self.shutdown.is_cancelled()
            && self.availability.level() == Level::Available
            && self.sessions.recent.is_caught_up()
            && self.kafka.reachable()
    }
}
