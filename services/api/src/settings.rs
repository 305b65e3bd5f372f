//! The api's settings: defaults here, then the file named by `RILL_CONFIG`,
//! then `RILL_*` environment variables (see `rill_runtime::settings`).

use std::net::SocketAddr;
use std::time::Duration;

use rill_auth::api_key::ApiKeySettings;
use rill_auth::password::PasswordSettings;
use rill_runtime::rate_limit::Rate;
use rill_runtime::session_cookie::SessionSettings;
use rill_runtime::settings::ServiceSettings;
use rill_runtime::{KafkaSettings, SettingsError, TelemetrySettings};
use rill_sessions::RedisSettings;
use rill_store::StoreSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Address to listen on. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
    /// How long a write waits to become visible in the store before the api
    /// answers 202 instead of 200/201, in ms. Default 5000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub consistency_timeout_ms: Duration,
    pub limits: ApiLimits,
    /// Run without a cookie key (a random one is made: sessions do not
    /// survive a restart nor work on the edges). Default false.
    pub dev_mode: bool,
    /// The session cookie: the same key and name as the edges'.
    pub session: SessionSettings,
    /// Keys of the server API (`X-Api-Key`), as SHA-256 digests. Default
    /// none: only signed-in users' reads work.
    pub api_keys: ApiKeySettings,
    /// How passwords are hashed (argon2id) and which are accepted.
    pub password: PasswordSettings,
    /// How many failed logins an account or an address may have in a
    /// window before logins are refused with 429.
    pub login: LoginLimits,
    /// A profile every new account joins at sign-up, by name (a lobby, so
    /// that the browser client is usable on its own): made the first time
    /// with an id derived from the name, so every api agrees on it.
    /// Default none: a new account is in no profile until a server binds
    /// it.
    pub signup_lobby: Option<String>,
    /// The test-data routes (`/api/testdata`), even with an API key.
    /// Default false; the local stack turns them on.
    pub test_data: bool,
    /// Origins, besides the api's own host, whose pages may make cookie
    /// requests that change something (CSRF). Default none.
    pub allowed_origins: Vec<String>,
    /// The operations page (`/api/ops`) and its stream: what it scrapes.
    pub ops: OpsSettings,
    pub kafka: KafkaSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
}

/// Every limit the api enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiLimits {
    /// Largest `limit` of a page. Default 200.
    pub max_page_size: usize,
    /// `limit` when a request gives none. Default 50.
    pub default_page_size: usize,
    /// Most users one test-data request may create. Default 10000.
    pub max_test_users: usize,
    /// Most profiles one test-data request may create. Default 1000.
    pub max_test_profiles: usize,
    /// Largest request body, in bytes. Default 65536.
    pub max_body_bytes: u64,
    /// Largest `data` of a publish, as JSON text, in bytes. Default 16384.
    pub max_publish_bytes: usize,
    /// Calls of one API key (`X-Api-Key`) to this api instance (per
    /// instance, not across the cluster: the cluster allows this times the
    /// number of api instances); past it, 429 `rate_limited` with
    /// `Retry-After`. Default 200 per second, 1000 at once.
    pub calls_per_api_key: Rate,
    /// Sign-ups from one client address to this api instance (per
    /// instance; the address is the last hop of `X-Forwarded-For`, else
    /// the peer); past it, 429 `rate_limited` with `Retry-After`. Each
    /// sign-up hashes a password (tens of milliseconds of CPU) and writes
    /// an account. Default one per 10 seconds, 10 at once.
    pub signups_per_address: Rate,
    /// Most client addresses with a sign-up bucket at once; past it, the
    /// fullest bucket gives its place. Default 100000.
    pub max_rate_limited_addresses: usize,
    /// A request's headers must arrive within this many seconds of its
    /// first byte, or the connection is closed (slowloris). Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub header_read_timeout_secs: Duration,
    /// A request's body must arrive within this many seconds of its
    /// headers, or the connection is closed (a slow body). Default 10.
    #[serde(with = "rill_runtime::settings::secs")]
    pub body_read_timeout_secs: Duration,
    /// A connection with no request in progress (keep-alive) is closed
    /// after this many seconds; above Traefik's idle timeout to its
    /// backends (90 s). Default 120.
    #[serde(with = "rill_runtime::settings::secs")]
    pub idle_timeout_secs: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_page_size: 200,
            default_page_size: 50,
            max_test_users: 10_000,
            max_test_profiles: 1_000,
            max_body_bytes: 65_536,
            max_publish_bytes: 16_384,
            calls_per_api_key: Rate {
                per_second: 200.0,
                burst: 1000,
            },
            signups_per_address: Rate {
                per_second: 0.1,
                burst: 10,
            },
            max_rate_limited_addresses: 100_000,
            header_read_timeout_secs: Duration::from_secs(10),
            body_read_timeout_secs: Duration::from_secs(10),
            idle_timeout_secs: Duration::from_secs(120),
        }
    }
}

/// What the operations stream (`GET /api/ops/stream`) shows: the api
/// scrapes these services' `/metrics` (and the edges' `/readyz`) while an
/// operator watches, and nothing when no one does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Base URLs of every edge's HTTP listener (`http://edge-1:8080`),
    /// where its `/metrics` and `/readyz` are. Plain `http` (the cluster's
    /// network). Default none: the page shows no edges.
    pub edges: Vec<String>,
    /// Base URL of the persistence consumer's listener, for its consumer
    /// lag per topic. Default none.
    pub persist: Option<String>,
    /// How often the services are scraped and the page updated, in ms.
    /// Default 2000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub interval_ms: Duration,
    /// How long one scrape may take before its service shows as down, in
    /// ms. Default 1000.
    #[serde(with = "rill_runtime::settings::millis")]
    pub scrape_timeout_ms: Duration,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            edges: Vec::new(),
            persist: None,
            interval_ms: Duration::from_secs(2),
            scrape_timeout_ms: Duration::from_secs(1),
        }
    }
}

impl OpsSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let plain_http = |url: &str| url.starts_with("http://") && url.len() > "http://".len();
        if !self.edges.iter().all(|url| plain_http(url)) {
            return Err(SettingsError::invalid(
                "ops.edges",
                "every edge must be an http:// URL",
            ));
        }
        if self.persist.as_deref().is_some_and(|url| !plain_http(url)) {
            return Err(SettingsError::invalid(
                "ops.persist",
                "must be an http:// URL",
            ));
        }
        if self.interval_ms < Duration::from_millis(200) {
            return Err(SettingsError::invalid(
                "ops.interval_ms",
                "must be at least 200",
            ));
        }
        if self.scrape_timeout_ms.is_zero() || self.scrape_timeout_ms > self.interval_ms {
            return Err(SettingsError::invalid(
                "ops.scrape_timeout_ms",
                "must be above 0 and at most ops.interval_ms",
            ));
        }
        Ok(())
    }
}

/// The login rate limit (failed logins), kept in Redis so that it holds
/// across every api.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimits {
    /// Failed logins of one account in a window before its logins are
    /// refused until the window ends. Default 5.
    pub max_failures_per_account: u64,
    /// Failed logins from one client address in a window (the address
    /// Traefik saw, the last `X-Forwarded-For` hop). Default 20.
    pub max_failures_per_address: u64,
    /// The window, in seconds, from the first failure. Default 300.
    #[serde(with = "rill_runtime::settings::secs")]
    pub failure_window_secs: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            failure_window_secs: Duration::from_secs(300),
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            consistency_timeout_ms: Duration::from_secs(5),
            limits: ApiLimits::default(),
            dev_mode: false,
            session: SessionSettings::default(),
            api_keys: ApiKeySettings::default(),
            password: PasswordSettings::default(),
            login: LoginLimits::default(),
            signup_lobby: None,
            test_data: false,
            allowed_origins: Vec::new(),
            ops: OpsSettings::default(),
            kafka: KafkaSettings::default(),
            store: StoreSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl ServiceSettings for ApiSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let l = &self.limits;
        if l.max_page_size == 0 {
            return Err(SettingsError::invalid(
                "limits.max_page_size",
                "must be above 0",
            ));
        }
        if l.default_page_size == 0 || l.default_page_size > l.max_page_size {
            return Err(SettingsError::invalid(
                "limits.default_page_size",
                "must be between 1 and limits.max_page_size",
            ));
        }
        if l.max_body_bytes < 1024 {
            return Err(SettingsError::invalid(
                "limits.max_body_bytes",
                "must be at least 1024",
            ));
        }
        l.calls_per_api_key.validate("limits.calls_per_api_key")?;
        l.signups_per_address
            .validate("limits.signups_per_address")?;
        if l.max_rate_limited_addresses == 0 {
            return Err(SettingsError::invalid(
                "limits.max_rate_limited_addresses",
                "must be above 0",
            ));
        }
        if l.header_read_timeout_secs.is_zero() {
            return Err(SettingsError::invalid(
                "limits.header_read_timeout_secs",
                "must be above 0",
            ));
        }
        if l.body_read_timeout_secs.is_zero() {
            return Err(SettingsError::invalid(
                "limits.body_read_timeout_secs",
                "must be above 0",
            ));
        }
        if l.idle_timeout_secs.is_zero() {
            return Err(SettingsError::invalid(
                "limits.idle_timeout_secs",
                "must be above 0",
            ));
        }
        self.ops.validate()?;
        self.kafka.validate()?;
        self.redis.validate()?;
        self.store.validate()?;
        self.api_keys.validate()?;
        self.password.validate()?;
        if self.login.max_failures_per_account == 0 || self.login.max_failures_per_address == 0 {
            return Err(SettingsError::invalid(
                "login.max_failures_per_account",
                "the login limits must be above 0",
            ));
        }
        if let Some(lobby) = &self.signup_lobby {
            rill_domain::Name::parse(lobby)
                .map_err(|err| SettingsError::invalid("signup_lobby", err.to_string()))?;
        }
        self.session.validate(self.dev_mode)
    }
}
