//! Building an edge from its settings, serving it on a bound listener, and
//! draining it on shutdown.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rill_runtime::SettingsError;
use rill_runtime::session_cookie::SessionCookies;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::availability::Availability;
use crate::capacity::{self, Capacity};
use crate::disconnect::{Disconnect, ReconnectReason};
use crate::from_kafka::{Delivery, DeliveryParts};
use crate::hub::Hub;
use crate::kafka_link::KafkaLink;
use crate::membership::Membership;
use crate::metrics::EdgeMetrics;
use crate::routes;
use crate::server;
use crate::session::peers::Peers;
use crate::session::{SessionLocks, SessionSettings, Sessions};
use crate::settings::EdgeSettings;
use crate::state::EdgeState;
use crate::to_kafka::Publisher;
use crate::transport::{self, TransportSettings};

/// Most kilobytes of sends the edge's producer holds until Kafka acks them.
const PRODUCER_BUFFER_KBYTES: u32 = 64 * 1024;

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
    #[error("cannot load the connection-token keys: {0}")]
    Tokens(#[from] rill_auth::token::TokenError),
}

/// An edge connected to Kafka, ready to serve.
#[derive(Debug)]
pub struct Edge {
    state: Arc<EdgeState>,
    delivery: Delivery,
    registry: Arc<Registry>,
    peers: Arc<Peers>,
}

impl Edge {
    /// Connects to Kafka, the store and Redis, and positions the delivery
    /// consumer at the end of the topics. Drains when `shutdown` is
    /// cancelled.
    pub async fn start(
        settings: EdgeSettings,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let edge_id = settings.node_id_or_random();
        let open_files = capacity::raise_open_files_limit();
        let max_connections = settings.limits.max_connections;
        if let Some(why) = capacity::open_files_shortfall(max_connections, open_files) {
            tracing::warn!(open_files_limit = ?open_files, max_connections, "{why}");
        }
        let metrics = Arc::new(EdgeMetrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let cookies = SessionCookies::new(&settings.session)?;
        let redis = rill_sessions::connect(&settings.redis).await?;
        let prefix = &settings.redis.key_prefix;
        let logins = rill_sessions::Logins::new(redis.clone(), prefix, cookies.ttl());
        let tokens = match settings.tokens.enabled() {
            true => Some(rill_auth::token::TokenVerifier::new(&settings.tokens)?),
            false => None,
        };
        let auth = Authenticator::new(cookies, logins, tokens);
        let hub = Hub::with_queue_bytes(
            settings.limits.slow_client_secs,
            settings.limits.session_queue_bytes,
            metrics.clone(),
        );
        let store = rill_store::open(&settings.store).await?;
        let session_ttl = settings.redis.session_ttl_secs;
        let lock_manager = rill_sessions::LockManager::new(redis.clone(), prefix, session_ttl);
        let locks = SessionLocks::new(
            lock_manager.clone(),
            rill_sessions::LiveSessions::new(redis.clone(), prefix, session_ttl),
            &edge_id,
            settings.edges.dead_after_ms,
        );
        let membership = Arc::new(Membership::new(
            store.clone(),
            settings.membership_cache_secs,
        ));
        let producer = rill_runtime::kafka::producer_config(&settings.kafka, &edge_id)
            // Sends waiting for Kafka's ack, at most this many (librdkafka's
            // default is 1 GiB): past it a send waits for room, within its
            // message timeout (docs/ARCHITECTURE.md, "An edge's memory").
            .set(
                "queue.buffering.max.kbytes",
                PRODUCER_BUFFER_KBYTES.to_string(),
            )
            .create()?;
        let publisher = Arc::new(Publisher::new(
            producer,
            settings.kafka.message_topic.clone(),
            settings.kafka.presence_topic.clone(),
            edge_id.clone(),
            settings.limits.max_message_bytes,
            settings.kafka.message_timeout_ms,
            metrics.clone(),
        ));
        let peers = Arc::new(Peers::new(
            rill_sessions::Edges::new(
                redis.clone(),
                prefix,
                settings.edges.dead_after_ms,
                session_ttl,
            ),
            lock_manager,
            locks.clone(),
            publisher.clone(),
            settings.edges.heartbeat_interval_ms,
        ));
        peers.first_beat().await;
        let (delivery, recent) = Delivery::start(
            &settings.kafka,
            &edge_id,
            &settings.recovery,
            DeliveryParts {
                hub: hub.clone(),
                membership: membership.clone(),
                max_body_bytes: settings.limits.max_message_bytes,
                max_presence_users: settings.limits.max_presence_users,
                metrics: metrics.clone(),
            },
        )
        .await?;
        let capacity = Capacity::new(settings.limits.max_connections, metrics.clone());
        let availability = Availability::new(
            settings.availability.clone(),
            capacity.clone(),
            metrics.clone(),
        );
        let tasks = TaskTracker::new();
        let sessions = Arc::new(Sessions {
            edge_id: edge_id.clone(),
            settings: SessionSettings {
                queue_depth: settings.limits.session_queue_depth,
                max_presence_users: settings.limits.max_presence_users,
                lock_wait: settings.lock_wait_ms,
                recovery: settings.recovery.clone(),
                lifetime: settings.lifetime.clone(),
            },
            hub,
            locks,
            membership,
            capacity,
            availability: availability.clone(),
            publisher,
            send_keys: rill_sessions::SendKeys::new(
                redis,
                &settings.redis.key_prefix,
                settings.limits.idempotency_window_secs,
            ),
            recent,
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        let transport = Arc::new(transport::Context {
            sessions: sessions.clone(),
            auth,
            post_sends: rill_runtime::rate_limit::KeyedLimiter::new(
                settings.limits.sends_per_user,
                settings.limits.max_rate_limited_users,
            ),
            open_limits: transport::limits::OpenLimits::new(&settings.limits, metrics.clone()),
            settings: TransportSettings::from_edge(&settings),
            metrics: metrics.clone(),
            tasks: tasks.clone(),
        });
        let stop = CancellationToken::new();
        let kafka = KafkaLink::start(
            sessions.publisher.clone(),
            settings.availability.kafka_unreachable_ms,
            stop.clone(),
        );
        let state = Arc::new(EdgeState {
            settings,
            edge_id,
            sessions,
            transport,
            availability,
            kafka,
            metrics,
            shutdown,
            stop,
            tasks,
        });
        Ok(Self {
            state,
            delivery,
            registry: Arc::new(registry),
            peers,
        })
    }

    /// This edge's node id.
    pub fn id(&self) -> &str {
        &self.state.edge_id
    }

    /// Serves on `listener`. On shutdown, drains (see [`drain`]), then
    /// stops, waits for sessions to close and flushes what Kafka has not yet
    /// acknowledged.
    pub async fn serve(self, listener: TcpListener) {
        let Self {
            state,
            delivery,
            registry,
            peers,
        } = self;
        let stop = state.stop.clone();
        let sessions = &state.sessions;
        // The heartbeat goes on until the locks are released (a survivor
        // would otherwise end what this edge is still ending).
        let beating = CancellationToken::new();
        let heartbeat = tokio::spawn(peers.clone().beat(beating.clone()));
        let background = [
            tokio::spawn(delivery.run(stop.clone())),
            tokio::spawn(sessions.locks.clone().keep(stop.clone())),
            tokio::spawn(peers.clone().watch(stop.clone())),
            tokio::spawn(
                sessions
                    .hub
                    .clone()
                    .beat(state.settings.heartbeat.interval_secs, stop.clone()),
            ),
            tokio::spawn(state.availability.clone().probe_lag(stop.clone())),
            tokio::spawn(drain(state.clone())),
        ];
        tune_connections(&listener, &state.settings);
        let routes = routes::all(state.clone(), registry);
        tracing::info!(edge_id = %state.edge_id, addr = ?listener.local_addr().ok(), "edge serving");
        let grace = stop_grace(&state.settings);
        let limits = &state.settings.limits;
        let connection_limits = server::ConnectionLimits {
            deadlines: rill_runtime::http_deadlines::Deadlines {
                header_read: limits.header_read_timeout_secs,
                idle: limits.idle_timeout_secs,
                body_read: limits.body_read_timeout_secs,
            },
            max_connections: limits.max_connections + limits.max_pending_connections,
        };
        let server = server::serve(
            routes,
            listener,
            stop.clone(),
            connection_limits,
            state.metrics.clone(),
        );
        // Graceful shutdown waits for every response to end; a client that
        // stopped reading an SSE stream would hold it forever.
        let overdue = async {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            _ = server => {}
            _ = overdue => tracing::warn!("connections still open after the drain: dropping them"),
        }
        state.tasks.close();
        if tokio::time::timeout(grace, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after the drain");
        }
        let released = tokio::time::timeout(grace, sessions.locks.released())
            .await
            .is_ok();
        beating.cancel();
        let _ = heartbeat.await;
        if released {
            peers.retire().await;
        } else {
            // Not retired: once its heartbeat is old, a survivor publishes
            // the leaves of the sessions still recorded as this edge's.
            tracing::warn!(
                "some sessions' leaves (or their lock releases) did not finish in time: another edge will end them after edges.dead_after_ms"
            );
        }
        for task in background {
            let _ = task.await;
        }
        let publisher = sessions.publisher.clone();
        let _ = tokio::task::spawn_blocking(move || publisher.flush(grace)).await;
        tracing::info!(edge_id = %state.edge_id, "edge stopped");
    }
}

/// Socket options for every connection, set on the listener (Linux hands
/// them to accepted sockets):
/// - Nagle off: an ack or event written while an earlier frame is
///   unacknowledged would otherwise wait for the client's delayed ACK
///   (~40 ms);
/// - a user timeout of `limits.slow_client_secs`: a client that leaves
///   written data unacknowledged (or its window shut) that long is cut off
///   by the kernel. The edge's own write timeout cannot see an SSE client
///   that stopped reading (hyper stops asking for events); without this
///   its session, and its lock, lived until TCP gave up, which a window
///   kept shut by a live client never does.
fn tune_connections(listener: &TcpListener, settings: &EdgeSettings) {
    let socket = socket2::SockRef::from(listener);
    if let Err(err) = socket.set_tcp_nodelay(true) {
        tracing::warn!(error = %err, "cannot turn Nagle off on the listener");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let timeout = settings.limits.slow_client_secs;
        if let Err(err) = socket.set_tcp_user_timeout(Some(timeout)) {
            tracing::warn!(error = %err, "cannot set the TCP user timeout on the listener");
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = settings;
}

/// How long each step after the drain may take: a tenth of the window,
/// 1 to 2 seconds, so that the edge exits soon after the window.
fn stop_grace(settings: &EdgeSettings) -> Duration {
    (settings.drain.window_secs / 10).clamp(Duration::from_secs(1), Duration::from_secs(2))
}

/// Once shutdown begins: not ready (new sessions get 503), every session
/// told to reconnect, spread evenly over the first three quarters of
/// `drain.window_secs`, so that the other edges take them in a steady
/// stream; then the edge stops, when the last session left or at nine
/// tenths of the window, whichever comes first.
async fn drain(state: Arc<EdgeState>) {
    tokio::select! {
        _ = state.shutdown.cancelled() => {}
        _ = state.stop.cancelled() => return,
    }
    state.metrics.draining.set(1);
    let started = Instant::now();
    let window = state.settings.drain.window_secs;
    let sessions = state.sessions.hub.sessions();
    tracing::info!(
        sessions = sessions.len(),
        window_secs = window.as_secs(),
        "draining"
    );
    let spread = window * 3 / 4;
    let count = sessions.len() as u32;
    for (i, session) in (0u32..).zip(&sessions) {
        tokio::time::sleep_until(started + spread * i / count.max(1)).await;
        session.end(Disconnect::Reconnect(ReconnectReason::Draining));
    }
    let capacity = &state.sessions.capacity;
    let hard_end = started + window * 9 / 10;
    while capacity.live() > 0 && Instant::now() < hard_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for session in state.sessions.hub.sessions() {
        session.end(Disconnect::Reconnect(ReconnectReason::Draining));
    }
    tracing::info!(left = capacity.live(), "drain over: stopping");
    state.stop.cancel();
}
