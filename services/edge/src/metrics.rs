//! The edge's Prometheus metrics.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Transport {
    Websocket,
    Sse,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: Transport,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug)]
pub struct EdgeMetrics {
    live_sessions: Family<TransportLabels, Gauge>,
    pub sends_accepted: Counter,
    /// Sends whose idempotency key was used already: answered, not sent.
    pub sends_repeated: Counter,
    pub sends_refused: Family<ReasonLabels, Counter>,
    pub send_ack_seconds: Histogram,
    pub records_consumed: Counter,
    pub presence_events_skipped: Counter,
    pub presence_retries: Counter,
    pub records_invalid: Counter,
    pub queued_events: Counter,
    pub dropped_events: Counter,
    pub delivered_events: Counter,
    /// Bytes of events waiting in session queues (an event queued for n
    /// sessions counts n times).
    pub queued_bytes: Gauge,
    pub sessions_refused: Family<ReasonLabels, Counter>,
    pub sessions_ended: Family<ReasonLabels, Counter>,
    /// Connections closed by a read deadline (header_read_timeout,
    /// idle_timeout).
    pub connections_expired: Family<ReasonLabels, Counter>,
    /// Connections closed at once: the edge had its most HTTP connections.
    pub connections_refused: Counter,
    pub replayed_messages: Counter,
    /// 0 available, 1 warning, 2 critical.
    pub availability: Gauge,
    pub event_loop_lag_seconds: Gauge<f64, AtomicU64>,
    pub draining: Gauge,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self {
            live_sessions: Family::default(),
            sends_accepted: Counter::default(),
            sends_repeated: Counter::default(),
            sends_refused: Family::default(),
            send_ack_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            records_consumed: Counter::default(),
            presence_events_skipped: Counter::default(),
            presence_retries: Counter::default(),
            records_invalid: Counter::default(),
            queued_events: Counter::default(),
            dropped_events: Counter::default(),
            delivered_events: Counter::default(),
            queued_bytes: Gauge::default(),
            sessions_refused: Family::default(),
            sessions_ended: Family::default(),
            connections_expired: Family::default(),
            connections_refused: Counter::default(),
            replayed_messages: Counter::default(),
            availability: Gauge::default(),
            event_loop_lag_seconds: Gauge::default(),
            draining: Gauge::default(),
        }
    }
}

impl EdgeMetrics {
    pub fn live_sessions(&self, transport: Transport) -> Gauge {
        self.live_sessions
            .get_or_create(&TransportLabels { transport })
            .clone()
    }

    pub fn refused(&self, reason: &'static str) {
        self.sends_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn session_refused(&self, reason: &'static str) {
        self.sessions_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn session_ended(&self, reason: &'static str) {
        self.sessions_ended
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn connection_expired(&self, reason: &'static str) {
        self.connections_expired
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Registers every metric under `rill_edge_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rill_edge");
        r.register(
            "live_sessions",
            "Live sessions on this edge",
            self.live_sessions.clone(),
        );
        r.register(
            "sends_accepted",
            "Messages Kafka acknowledged",
            self.sends_accepted.clone(),
        );
        r.register(
            "sends_repeated",
            "Sends whose idempotency key was used already: the first send's id answered, nothing sent",
            self.sends_repeated.clone(),
        );
        r.register(
            "sends_refused",
            "Sends refused, by reason",
            self.sends_refused.clone(),
        );
        r.register_with_unit(
            "send_ack",
            "Time from a send's arrival to Kafka's acknowledgement",
            Unit::Seconds,
            self.send_ack_seconds.clone(),
        );
        r.register(
            "records_consumed",
            "Message records read from Kafka",
            self.records_consumed.clone(),
        );
        r.register(
            "presence_events_skipped",
            "Join and leave events not delivered: their profile had more live sessions here than limits.max_presence_users",
            self.presence_events_skipped.clone(),
        );
        r.register(
            "presence_retries",
            "Presence changes (join, leave) Kafka refused and sent again: each is retried until Kafka has it",
            self.presence_retries.clone(),
        );
        r.register(
            "records_invalid",
            "Records that did not decode",
            self.records_invalid.clone(),
        );
        r.register(
            "queued_events",
            "Events queued for local sessions",
            self.queued_events.clone(),
        );
        r.register(
            "dropped_events",
            "Events dropped because a session's queue was full",
            self.dropped_events.clone(),
        );
        r.register(
            "delivered_events",
            "Events written to clients",
            self.delivered_events.clone(),
        );
        r.register_with_unit(
            "queued",
            "Event bytes waiting in session queues",
            Unit::Bytes,
            self.queued_bytes.clone(),
        );
        r.register(
            "sessions_refused",
            "Streams refused, by reason (already_live, at_capacity, opens_per_user, opens_per_address, sessions_per_address, ...)",
            self.sessions_refused.clone(),
        );
        r.register(
            "sessions_ended",
            "Sessions ended by the edge, by reason",
            self.sessions_ended.clone(),
        );
        r.register(
            "connections_expired",
            "HTTP connections closed by a read deadline, by reason (header_read_timeout, idle_timeout)",
            self.connections_expired.clone(),
        );
        r.register(
            "connections_refused",
            "HTTP connections closed as soon as accepted: limits.max_connections + limits.max_pending_connections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "replayed_messages",
            "Messages replayed to reconnecting clients",
            self.replayed_messages.clone(),
        );
        r.register(
            "availability",
            "0 available, 1 warning (not ready), 2 critical (refusing sessions)",
            self.availability.clone(),
        );
        r.register_with_unit(
            "event_loop_lag",
            "How late the event loop runs a timer (smoothed over the last probes)",
            Unit::Seconds,
            self.event_loop_lag_seconds.clone(),
        );
        r.register(
            "draining",
            "1 while the edge drains its sessions before exiting",
            self.draining.clone(),
        );
    }
}
