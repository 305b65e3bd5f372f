//! The edge's settings: defaults here, then the file named by `RILL_CONFIG`,
//! then `RILL_*` environment variables (see `rill_runtime::settings`).

use std::net::SocketAddr;
use std::time::Duration;

use rill_runtime::rate_limit::Rate;
use rill_runtime::session_cookie::SessionSettings;
use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use rill_sessions::RedisSettings;
use rill_store::StoreSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Address to listen on. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// This node's name in logs, metrics and the `x-rill-edge` response
    /// header. Default: `edge-` and a random suffix.
    pub node_id: String,
    /// Allows running without a cookie key. Default false.
    pub dev_mode: bool,
    /// Origins (`scheme://host[:port]`) allowed to open a WebSocket besides
    /// the edge's own. Default: none.
    pub allowed_origins: Vec<String>,
    /// How long a confirmed membership is trusted before the store is asked
    /// again, in seconds (unbinds arrive as events and apply at once).
    /// Default 30.
    #[serde(with = "rill_runtime::settings::secs")]
    pub membership_cache_secs: Duration,
    /// How long opening a stream waits for the previous session of the same
    /// user and profile to let go of its lock (a reload, a quick reconnect)
    /// before answering 409, in ms. Default 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub lock_wait_ms: Duration,
    pub session: SessionSettings,
    /// Connection tokens (JWT) that applications' backends sign for their
    /// users: the keys accepted, audience, issuer. Default none (only the
    /// session cookie is accepted).
    pub tokens: rill_auth::token::TokenSettings,
    pub limits: Limits,
    pub heartbeat: Heartbeat,
    pub lifetime: Lifetime,
    pub recovery: Recovery,
    pub drain: Drain,
    pub availability: Availability,
    /// This edge's heartbeat in Redis, by which the others find it dead.
    pub edges: Liveness,
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
}

/// Every limit the edge enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message body, in UTF-8 bytes. Larger ones get a
    /// `message_too_large` error; the session goes on. Default 4096.
    pub max_message_bytes: usize,
    /// Largest WebSocket frame or HTTP request body, in bytes. A larger
    /// WebSocket frame closes the connection (code 1009); a larger POST gets
    /// 413. Default 65536.
    pub max_frame_bytes: usize,
    /// Most live sessions (WebSocket and SSE) at once; past it, 503 with
    /// `Retry-After`. Each is a socket: start-up warns when this plus
    /// `capacity::OTHER_FILES` does not fit under the open-file limit.
    /// Default 10000.
    pub max_connections: usize,
    /// Events queued for one session before newer ones are dropped and the
    /// client is told of the gap. Default 256.
    pub session_queue_depth: usize,
    /// Sends of one WebSocket session waiting for Kafka at once; past it the
    /// edge stops reading that socket until one completes. Default 32.
    pub max_inflight_sends: usize,
    /// Most users listed in the presence event a session opens with;
    /// and a profile with more live sessions than this on an edge gets no
    /// join and leave events there (a big room's join storm would cost
    /// every session an event per arrival). Default 200.
    pub max_presence_users: usize,
    /// A client whose socket takes longer than this to accept a write, or
    /// that stays behind (events dropped, queue never empty) for longer,
    /// is disconnected, in seconds. Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub slow_client_secs: Duration,
    /// Sends of one live session (WebSocket): past it, an `error` event
    /// `rate_limited` with `retry_after_ms`, and the session goes on.
    /// Default 20 per second, 100 at once.
    pub sends_per_session: Rate,
    /// Sends with `POST /live/{profile}/messages` of one user on this edge
    /// (per edge, not across the cluster): past it, 429 with
    /// `Retry-After`. Default 20 per second, 100 at once.
    pub sends_per_user: Rate,
    /// Users this edge tracks at once for each limit per user
    /// (`sends_per_user`, `opens_per_user`): a bucket each; a full bucket
    /// is dropped when room is needed, and when none is, a new user waits
    /// as for one token. Default 100000.
    pub max_rate_limited_users: usize,
    /// Streams (WebSocket upgrades and SSE opens) one user may start on
    /// this edge (per edge, not across the cluster: the cluster allows
    /// this times the number of edges): past it, 429 with `Retry-After`,
    /// before the upgrade. Default 5 per second, 20 at once.
    pub opens_per_user: Rate,
    /// Streams started from one client address on this edge (per edge;
    /// the address is the last `X-Forwarded-For` hop, see
    /// `transport::address`; IPv6 by /64), counted before the caller is
    /// authenticated: past it, 429 with `Retry-After`. Many users behind
    /// one NAT share an address. Default 50 per second, 500 at once.
    pub opens_per_address: Rate,
    /// Client addresses this edge tracks at once for `opens_per_address`,
    /// as `max_rate_limited_users` for users. Default 100000.
    pub max_rate_limited_addresses: usize,
    /// Live sessions from one client address on this edge (its whole
    /// share of `max_connections` that one address may take); past it,
    /// 429 `too_many_sessions` with `Retry-After`. Many users behind one
    /// NAT share an address: keep it well above what one such network
    /// holds. Default 1000.
    pub max_sessions_per_address: usize,
    /// Bytes of events queued for one session (each event counted whole,
    /// shared or not); past it, as past `session_queue_depth`, newer
    /// events are dropped and the client gets a `gap`. An event is always
    /// taken into an empty queue, whatever its size. Default 65536.
    pub session_queue_bytes: usize,
    /// HTTP connections beyond `max_connections` (opening a stream,
    /// sending, or idle between requests): the edge holds at most
    /// `max_connections` plus this many HTTP connections (a WebSocket is
    /// one until upgraded); past it a new connection is closed at once.
    /// Default 1000.
    pub max_pending_connections: usize,
    /// A request's headers must arrive within this many seconds of its
    /// first byte, or the connection is closed (slowloris). Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub header_read_timeout_secs: Duration,
    /// A request's body must arrive within this many seconds of its
    /// headers, or the connection is closed (a slow body). Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub body_read_timeout_secs: Duration,
    /// A connection with no request in progress (keep-alive) is closed
    /// after this many seconds. Above Traefik's idle timeout to its
    /// backends (90 s), so that the edge does not close a connection just
    /// as Traefik reuses it. Default 120.
    #[serde(with = "rill_runtime::settings::secs")]
    pub idle_timeout_secs: Duration,
    /// A WebSocket upgrade must be done (the `101` written and the
    /// connection handed over) within this many seconds of its answer, or
    /// the session it opened is closed. Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub upgrade_timeout_secs: Duration,
    /// A WebSocket message (a frame, or a fragmented message) begun must
    /// end within this many seconds, pings and pongs between its parts or
    /// not; else the connection is closed with 1008. Default 30.
    #[serde(with = "rill_runtime::settings::secs")]
    pub fragment_timeout_secs: Duration,
    /// How long an idempotency key of a send is remembered (a retry with
    /// the key within this time gets the first send's id and is not sent
    /// again), in seconds. Default 600.
    #[serde(with = "rill_runtime::settings::secs")]
    pub idempotency_window_secs: Duration,
}

/// Keeping idle sessions alive, and finding the dead ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Heartbeat {
    /// Seconds between WebSocket pings and SSE comments. Below the idle
    /// timeouts of every proxy on the way (Traefik's default is 180 s).
    /// Default 15.
    #[serde(with = "rill_runtime::settings::secs")]
    pub interval_secs: Duration,
    /// A WebSocket client that sends nothing (not even a pong) for
    /// `interval_secs + timeout_secs` is closed and its lock released.
    /// Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub timeout_secs: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval_secs: Duration::from_secs(15),
            timeout_secs: Duration::from_secs(10),
        }
    }
}

/// A maximum session lifetime, so that long-lived clients spread over the
/// edges added by a scale-out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lifetime {
    /// Seconds after which a session gets `reconnect` and is closed; 0 is
    /// no limit. Default 0 (off).
    #[serde(with = "rill_runtime::settings::secs")]
    pub max_secs: Duration,
    /// A random 0..dither_secs added to each session's lifetime, so that
    /// sessions opened together do not all reconnect together. Default 0.
    #[serde(with = "rill_runtime::settings::secs")]
    pub dither_secs: Duration,
}

/// What a reconnecting client gets back: the messages after its last seen
/// position, from the edge's window of the sequenced topic's recent
/// records (see `recovery.rs`). Memory: at most `window_bytes` (plus the
/// events' share of the sessions' queues, which they share).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recovery {
    /// Bytes of recent messages the edge keeps, over all partitions of the
    /// sequenced topic (each gets an equal share; the oldest go first).
    /// A client whose position fell out of the window gets a `gap`.
    /// Default 67108864 (64 MiB).
    pub window_bytes: usize,
    /// How long a message stays in the window, in seconds; at start-up the
    /// edge reads this far back. Default 300.
    #[serde(with = "rill_runtime::settings::secs")]
    pub window_secs: Duration,
    /// Most messages replayed to one reconnecting client; past it (or past
    /// `max_replay_bytes`) the client gets a `gap` and the newest
    /// `gap_page` messages instead. Default 1000.
    pub max_replay: usize,
    /// Most bytes of messages replayed to one client. Default 1048576.
    pub max_replay_bytes: usize,
    /// Messages a client gets after a `gap` (the newest of its profile in
    /// the window), to show what is current while it reads history for
    /// the rest. Default 50.
    pub gap_page: usize,
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            window_bytes: 64 * 1024 * 1024,
            window_secs: Duration::from_secs(300),
            max_replay: 1000,
            max_replay_bytes: 1024 * 1024,
            gap_page: 50,
        }
    }
}

/// Leaving on SIGTERM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Drain {
    /// Seconds over which sessions are told to reconnect, spread evenly;
    /// the edge exits at the end of it at the latest. Keep it below the
    /// orchestrator's grace period. Default 20.
    #[serde(with = "rill_runtime::settings::secs")]
    pub window_secs: Duration,
    /// Most milliseconds a client is told to wait before reconnecting (a
    /// random 0..this each), so that they do not all land at once. Default
    /// 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub reconnect_jitter_ms: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            window_secs: Duration::from_secs(20),
            reconnect_jitter_ms: Duration::from_millis(1000),
        }
    }
}

/// When the edge is available, warning (not ready: no new sessions from the
/// ingress, current ones stay) or critical (new sessions get 503).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Availability {
    /// Warning from this share of `limits.max_connections`, in percent.
    /// Default 80.
    pub warning_percent: u8,
    /// Critical from this share of `limits.max_connections`. Default 100.
    pub critical_percent: u8,
    /// Warning when the event loop runs this late, in ms. Default 100.
    #[serde(with = "rill_runtime::settings::millis")]
    pub lag_warning_ms: Duration,
    /// Critical when the event loop runs this late, in ms. Default 500.
    #[serde(with = "rill_runtime::settings::millis")]
    pub lag_critical_ms: Duration,
    /// How often the event-loop lag is probed, in ms. Default 250.
    #[serde(with = "rill_runtime::settings::millis")]
    pub probe_interval_ms: Duration,
    /// Not ready (`/readyz` 503) when Kafka has not answered the edge
    /// for this long, in ms: sends would fail, nothing new would be
    /// delivered. The edge asks every third of it. Default 5000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub kafka_unreachable_ms: Duration,
}

impl Default for Availability {
    fn default() -> Self {
        Self {
            warning_percent: 80,
            critical_percent: 100,
            lag_warning_ms: Duration::from_millis(100),
            lag_critical_ms: Duration::from_millis(500),
            probe_interval_ms: Duration::from_millis(250),
            kafka_unreachable_ms: Duration::from_millis(5000),
        }
    }
}

/// How an edge tells the others it is alive, and how soon they end the
/// sessions of one that stopped (`session::peers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Liveness {
    /// How often this edge writes its heartbeat to Redis and looks at the
    /// other edges' heartbeats, in ms. Default 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub heartbeat_interval_ms: Duration,
    /// An edge whose heartbeat is this old is declared dead by one of the
    /// others, which publishes a `leave` for each of its sessions and frees
    /// their locks and registry entries: a killed edge's sessions end
    /// within `dead_after_ms + heartbeat_interval_ms` (plus the time to end
    /// them), not after `redis.session_ttl_secs`. An edge paused or cut off
    /// from Redis for this long may be declared dead: it then ends its
    /// sessions with `reconnect` when it comes back. At least twice
    /// `heartbeat_interval_ms`. Default 3000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub dead_after_ms: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: Duration::from_millis(1000),
            dead_after_ms: Duration::from_millis(3000),
        }
    }
}

impl Liveness {
    fn validate(&self) -> Result<(), SettingsError> {
        if !(Duration::from_millis(50)..=Duration::from_secs(60))
            .contains(&self.heartbeat_interval_ms)
        {
            return Err(SettingsError::invalid(
                "edges.heartbeat_interval_ms",
                "must be between 50 and 60000",
            ));
        }
        // One late beat must not make an edge dead.
        if self.dead_after_ms < self.heartbeat_interval_ms * 2 {
            return Err(SettingsError::invalid(
                "edges.dead_after_ms",
                "must be at least twice edges.heartbeat_interval_ms",
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4096,
            max_frame_bytes: 65_536,
            max_connections: 10_000,
            session_queue_depth: 256,
            max_inflight_sends: 32,
            max_presence_users: 200,
            slow_client_secs: Duration::from_secs(10),
            idempotency_window_secs: Duration::from_secs(600),
            sends_per_session: Rate {
                per_second: 20.0,
                burst: 100,
            },
            sends_per_user: Rate {
                per_second: 20.0,
                burst: 100,
            },
            max_rate_limited_users: 100_000,
            opens_per_user: Rate {
                per_second: 5.0,
                burst: 20,
            },
            opens_per_address: Rate {
                per_second: 50.0,
                burst: 500,
            },
            max_rate_limited_addresses: 100_000,
            max_sessions_per_address: 1000,
            session_queue_bytes: 65_536,
            max_pending_connections: 1000,
            header_read_timeout_secs: Duration::from_secs(10),
            body_read_timeout_secs: Duration::from_secs(10),
            idle_timeout_secs: Duration::from_secs(120),
            upgrade_timeout_secs: Duration::from_secs(10),
            fragment_timeout_secs: Duration::from_secs(30),
        }
    }
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            node_id: String::new(),
            dev_mode: false,
            allowed_origins: Vec::new(),
            membership_cache_secs: Duration::from_secs(30),
            lock_wait_ms: Duration::from_millis(1000),
            session: SessionSettings::default(),
            tokens: rill_auth::token::TokenSettings::default(),
            limits: Limits::default(),
            heartbeat: Heartbeat::default(),
            lifetime: Lifetime::default(),
            recovery: Recovery::default(),
            drain: Drain::default(),
            availability: Availability::default(),
            edges: Liveness::default(),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for EdgeSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.session.validate(self.dev_mode)?;
        self.tokens.validate()?;
        self.kafka.validate()?;
        self.store.validate()?;
        self.redis.validate()?;
        self.limits.validate()?;
        self.edges.validate()?;
        self.validate_sessions()?;
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(SettingsError::invalid(
                    "allowed_origins",
                    format!("{origin:?} is not an http(s) origin"),
                ));
            }
        }
        Ok(())
    }
}

impl EdgeSettings {
    /// The node id, or a fresh random one when none is set.
    pub fn node_id_or_random(&self) -> String {
        if self.node_id.is_empty() {
            format!("edge-{:06x}", rand::random::<u32>() & 0xff_ffff)
        } else {
            self.node_id.clone()
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("limits.max_message_bytes", self.max_message_bytes),
            ("limits.max_connections", self.max_connections),
            ("limits.session_queue_depth", self.session_queue_depth),
            ("limits.max_inflight_sends", self.max_inflight_sends),
            ("limits.max_presence_users", self.max_presence_users),
            ("limits.max_rate_limited_users", self.max_rate_limited_users),
            (
                "limits.max_rate_limited_addresses",
                self.max_rate_limited_addresses,
            ),
            (
                "limits.max_sessions_per_address",
                self.max_sessions_per_address,
            ),
            ("limits.session_queue_bytes", self.session_queue_bytes),
            (
                "limits.max_pending_connections",
                self.max_pending_connections,
            ),
        ];
        self.sends_per_session
            .validate("limits.sends_per_session")?;
        self.sends_per_user.validate("limits.sends_per_user")?;
        self.opens_per_user.validate("limits.opens_per_user")?;
        self.opens_per_address
            .validate("limits.opens_per_address")?;
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::invalid(field, "must be above 0"));
        }
        let deadlines = [
            (
                "limits.header_read_timeout_secs",
                self.header_read_timeout_secs,
            ),
            ("limits.body_read_timeout_secs", self.body_read_timeout_secs),
            ("limits.idle_timeout_secs", self.idle_timeout_secs),
            ("limits.upgrade_timeout_secs", self.upgrade_timeout_secs),
            ("limits.fragment_timeout_secs", self.fragment_timeout_secs),
        ];
        if let Some((field, _)) = deadlines.iter().find(|(_, v)| v.is_zero()) {
            return Err(SettingsError::invalid(field, "must be above 0"));
        }
        // A frame carries the body inside a JSON envelope: leave room for it,
        // so that an oversized body is answered, not cut off.
        if self.max_frame_bytes < 2 * self.max_message_bytes + 1024 {
            return Err(SettingsError::invalid(
                "limits.max_frame_bytes",
                "must be at least twice limits.max_message_bytes plus 1024",
            ));
        }
        if self.slow_client_secs.is_zero() {
            return Err(SettingsError::invalid(
                "limits.slow_client_secs",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

impl EdgeSettings {
    fn validate_sessions(&self) -> Result<(), SettingsError> {
        let positive = [
            ("heartbeat.interval_secs", self.heartbeat.interval_secs),
            ("heartbeat.timeout_secs", self.heartbeat.timeout_secs),
            ("recovery.window_secs", self.recovery.window_secs),
            ("drain.window_secs", self.drain.window_secs),
            (
                "availability.probe_interval_ms",
                self.availability.probe_interval_ms,
            ),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| v.is_zero()) {
            return Err(SettingsError::invalid(field, "must be above 0"));
        }
        let counts = [
            ("recovery.window_bytes", self.recovery.window_bytes),
            ("recovery.max_replay", self.recovery.max_replay),
            ("recovery.max_replay_bytes", self.recovery.max_replay_bytes),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::invalid(field, "must be above 0"));
        }
        let a = &self.availability;
        if !(1..=100).contains(&a.critical_percent) || a.warning_percent > a.critical_percent {
            return Err(SettingsError::invalid(
                "availability.warning_percent",
                "need 0 <= warning_percent <= critical_percent <= 100, critical above 0",
            ));
        }
        if !(Duration::from_millis(300)..=Duration::from_secs(300))
            .contains(&a.kafka_unreachable_ms)
        {
            return Err(SettingsError::invalid(
                "availability.kafka_unreachable_ms",
                "must be between 300 and 300000",
            ));
        }
        if a.lag_warning_ms > a.lag_critical_ms {
            return Err(SettingsError::invalid(
                "availability.lag_warning_ms",
                "must not be above availability.lag_critical_ms",
            ));
        }
        if self.lifetime.max_secs.is_zero() && !self.lifetime.dither_secs.is_zero() {
            return Err(SettingsError::invalid(
                "lifetime.dither_secs",
                "needs lifetime.max_secs above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_runtime::Secret;

    fn valid() -> EdgeSettings {
        let mut s = EdgeSettings::default();
        s.session.cookie_key = Some(Secret::new("k".repeat(64)));
        s
    }

    #[test]
    fn defaults_with_a_key_are_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn a_frame_limit_too_small_for_the_body_limit_is_refused() {
        let mut s = valid();
        s.limits.max_frame_bytes = s.limits.max_message_bytes;
        let err = s.validate().expect_err("must fail");
        assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
    }

    #[test]
    fn zero_limits_name_their_field() {
        let mut s = valid();
        s.limits.max_connections = 0;
        let err = s.validate().expect_err("must fail");
        assert!(err.to_string().contains("limits.max_connections"), "{err}");
    }

    #[test]
    fn session_settings_name_their_field() {
        let mut s = valid();
        s.availability.warning_percent = 90;
        s.availability.critical_percent = 80;
        let err = s.validate().expect_err("warning above critical");
        assert!(
            err.to_string().contains("availability.warning_percent"),
            "{err}"
        );
        let mut s = valid();
        s.drain.window_secs = Duration::ZERO;
        let err = s.validate().expect_err("no window");
        assert!(err.to_string().contains("drain.window_secs"), "{err}");
        let mut s = valid();
        s.lifetime.dither_secs = Duration::from_secs(5);
        let err = s.validate().expect_err("dither without lifetime");
        assert!(err.to_string().contains("lifetime.dither_secs"), "{err}");
    }

    #[test]
    fn a_dead_edge_needs_more_than_one_missed_beat() {
        let mut s = valid();
        s.edges.dead_after_ms = s.edges.heartbeat_interval_ms;
        let err = s.validate().expect_err("one beat");
        assert!(err.to_string().contains("edges.dead_after_ms"), "{err}");
        let mut s = valid();
        s.edges.heartbeat_interval_ms = Duration::ZERO;
        let err = s.validate().expect_err("no interval");
        assert!(
            err.to_string().contains("edges.heartbeat_interval_ms"),
            "{err}"
        );
    }

    #[test]
    fn origins_must_be_http() {
        let mut s = valid();
        s.allowed_origins = vec!["example.com".into()];
        assert!(s.validate().is_err());
    }

    #[test]
    fn node_id_is_generated_when_empty() {
        let s = valid();
        assert!(s.node_id_or_random().starts_with("edge-"));
        let named = EdgeSettings {
            node_id: "edge-7".into(),
            ..valid()
        };
        assert_eq!(named.node_id_or_random(), "edge-7");
    }
}
