//! Building an edge from its settings and serving it on a bound listener
//! until shutdown.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rill_runtime::SettingsError;
use rill_runtime::session_cookie::SessionCookies;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::capacity::Capacity;
use crate::from_kafka::Delivery;
use crate::hub::Hub;
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;
use crate::routes;
use crate::settings::EdgeSettings;
use crate::to_kafka::Publisher;
use rill_sessions::LiveSessions;

/// How long shutdown waits for sessions to close and Kafka to take what is
/// queued.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot reach Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot open the store: {0}")]
    Store(#[from] rill_store::StoreError),
    #[error("cannot reach Redis: {0}")]
    Sessions(#[from] rill_sessions::SessionsError),
}

/// What every request handler and session of one edge shares.
#[derive(Debug)]
pub struct EdgeState {
    pub settings: EdgeSettings,
    pub edge_id: String,
    pub cookies: SessionCookies,
    pub hub: Arc<Hub>,
    pub membership: Arc<Membership>,
    /// The cluster-wide registry of live sessions (Redis).
    pub live: LiveSessions,
    pub capacity: Arc<Capacity>,
    pub publisher: Publisher,
    pub metrics: Arc<EdgeMetrics>,
    pub shutdown: CancellationToken,
    /// WebSocket sessions, which outlive the HTTP request that opened them.
    pub tasks: TaskTracker,
}

/// An edge connected to Kafka, ready to serve.
#[derive(Debug)]
pub struct Edge {
    state: Arc<EdgeState>,
    delivery: Delivery,
    registry: Arc<Registry>,
}

impl Edge {
    /// Connects to Kafka and positions the delivery consumer at the end of
    /// the message topic. Stops when `shutdown` is cancelled.
    pub async fn start(
        settings: EdgeSettings,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let edge_id = settings.node_id_or_random();
        let metrics = Arc::new(EdgeMetrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let cookies = SessionCookies::new(&settings.session)?;
        let hub = Hub::new(metrics.clone());
        let store = rill_store::open(&settings.store).await?;
        let live = LiveSessions::connect(&settings.redis).await?;
        let membership = Arc::new(Membership::new(
            store,
            Duration::from_secs(settings.membership_cache_secs),
        ));
        let producer = rill_runtime::kafka::producer(&settings.kafka, &edge_id)?;
        let publisher = Publisher::new(
            producer,
            settings.kafka.message_topic.clone(),
            edge_id.clone(),
            settings.limits.max_message_bytes,
            Duration::from_millis(u64::from(settings.kafka.message_timeout_ms)),
            metrics.clone(),
        );
        let delivery = Delivery::start(
            &settings.kafka,
            &edge_id,
            hub.clone(),
            membership.clone(),
            settings.limits.max_message_bytes,
            metrics.clone(),
        )
        .await?;
        let capacity = Capacity::new(settings.limits.max_connections, metrics.clone());
        let state = Arc::new(EdgeState {
            settings,
            edge_id,
            cookies,
            hub,
            membership,
            live,
            capacity,
            publisher,
            metrics,
            shutdown,
            tasks: TaskTracker::new(),
        });
        Ok(Self {
            state,
            delivery,
            registry: Arc::new(registry),
        })
    }

    /// This edge's node id.
    pub fn id(&self) -> &str {
        &self.state.edge_id
    }

    /// Serves on `listener` until shutdown, then closes every session and
    /// flushes what Kafka has not yet acknowledged.
    pub async fn serve(self, listener: TcpListener) {
        let Self {
            state,
            delivery,
            registry,
        } = self;
        let delivering = tokio::spawn(delivery.run(state.shutdown.clone()));
        let refreshing = tokio::spawn(refresh_live_sessions(state.clone()));
        let routes = routes::all(state.clone(), registry);
        tracing::info!(edge_id = %state.edge_id, addr = ?listener.local_addr().ok(), "edge serving");
        warp::serve(routes)
            .incoming(listener)
            .graceful(state.shutdown.clone().cancelled_owned())
            .run()
            .await;
        state.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the shutdown grace period");
        }
        let _ = delivering.await;
        let _ = refreshing.await;
        let publisher_state = state.clone();
        let _ =
            tokio::task::spawn_blocking(move || publisher_state.publisher.flush(SHUTDOWN_GRACE))
                .await;
        tracing::info!(edge_id = %state.edge_id, "edge stopped");
    }
}

/// Keeps this edge's entries in the live-session registry from expiring,
/// until shutdown.
async fn refresh_live_sessions(state: Arc<EdgeState>) {
    let mut tick = tokio::time::interval(state.live.refresh_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pairs = state.hub.pairs();
        if let Err(err) = state.live.register(&pairs).await {
            tracing::warn!(error = %err, sessions = pairs.len(), "cannot refresh live sessions");
        }
    }
}
