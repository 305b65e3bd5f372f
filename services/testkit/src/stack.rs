//! A whole local platform for one test: broker, store, persist, api, edges
//! and Traefik.

use std::net::SocketAddr;
use std::time::Duration;

use rill_edge::{Edge, EdgeSettings};
use rill_runtime::Secret;
use rill_runtime::shutdown::CancellationToken;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::broker::Broker;
use crate::client::Client;
use crate::redis::Redis;
pub use crate::store::{TempDb, TestStore};
use crate::traefik::Traefik;
use rill_sessions::RedisSettings;

/// The cookie key every service of a test stack shares.
pub const TEST_COOKIE_KEY: &str =
    "test-cookie-key-test-cookie-key-test-cookie-key-test-cookie-key-0123456789";

/// The API key of a test stack's api (`Stack::server`).
pub const TEST_API_KEY: &str = "rk_test-api-key-of-the-test-stack";

/// The HS256 secret a test stack's edges accept connection tokens with.
pub const TEST_TOKEN_SECRET: &str = "test-token-secret-test-token-secret-0123456789";

/// The settings, as environment variables, that let a service process
/// (an edge, the api) of a test stack take its cookies and tokens.
pub fn auth_env() -> Vec<(&'static str, String)> {
    vec![
        ("RILL_SESSION__COOKIE_KEY", TEST_COOKIE_KEY.to_owned()),
        (
            "RILL_TOKENS__HS256_KEYS",
            format!(r#"[{{kid="test",secret="{TEST_TOKEN_SECRET}"}}]"#),
        ),
    ]
}

/// A connection token for `user`, valid for an hour, as an application's
/// backend would sign it.
pub fn test_token(user: Uuid) -> String {
    let exp = rill_runtime::clock::now_ms() / 1000 + 3600;
    rill_auth::token::sign_hs256(
        Some("test"),
        TEST_TOKEN_SECRET.as_bytes(),
        &json!({ "sub": user, "exp": exp }),
    )
}

/// An edge running in the test process, on a Tokio runtime of its own so
/// that it can be killed like a crashed process (see [`EdgeHandle::kill`]).
#[derive(Debug)]
pub struct EdgeHandle {
    pub id: String,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    runtime: Option<Runtime>,
}

impl EdgeHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the edge and waits until it has stopped (it drains).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops the edge as `kill -9` would: its runtime is dropped with every
    /// task, connection and timer on it, so clients see their connections
    /// cut at once, nothing drains, and what it holds in Redis stays until
    /// its TTL.
    pub fn kill(&mut self) {
        self.task = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Dropping a runtime blocks, which panics inside the test's own
        // runtime; the test is over anyway.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Which of the consumers a [`Stack`] runs in the test process.
#[derive(Debug, Clone, Copy)]
struct Parts {
    persist: bool,
    sequencer: bool,
}

impl Parts {
    const ALL: Self = Self {
        persist: true,
        sequencer: true,
    };
}

/// Settings of a sequencer for the test's own topics, with a consumer
/// group and a transactional id of the test's own.
pub fn sequencer_settings(broker: &Broker) -> rill_sequencer::SequencerSettings {
    rill_sequencer::SequencerSettings {
        kafka: broker.kafka_settings(),
        group_id: broker.group_id("sequencer"),
        transactional_id: broker.group_id("sequencer"),
        ..Default::default()
    }
}

#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub redis: Redis,
    /// Where the services keep users, profiles and history.
    pub store: TestStore,
    pub edges: Vec<EdgeHandle>,
    pub api: SocketAddr,
    /// Where the in-process persistence consumer listens (unused without).
    pub persist: SocketAddr,
    /// Where the in-process sequencer listens (unused without).
    pub sequencer: SocketAddr,
    pub traefik: Traefik,
    services: CancellationToken,
}

impl Stack {
    /// A broker, persist, the api, `edges` edges with default settings, and
    /// Traefik.
    pub async fn start(edges: usize) -> Self {
        Self::start_with(edges, |_| {}).await
    }

    /// As [`Stack::start`], with each edge's settings changed by `tweak`.
    pub async fn start_with(edges: usize, tweak: impl Fn(&mut EdgeSettings)) -> Self {
        Self::start_full(
            Broker::start().await,
            edges,
            Parts::ALL,
            TestStore::sqlite(),
            tweak,
        )
        .await
    }

    /// As [`Stack::start`], but without a persistence consumer: the test
    /// runs its own (as a process it can kill, say).
    pub async fn start_without_persist(edges: usize) -> Self {
        let parts = Parts {
            persist: false,
            ..Parts::ALL
        };
        Self::start_parts(edges, parts).await
    }

    /// As [`Stack::start`], but without a sequencer: the test runs its own
    /// (as a process it can kill, say). Until one runs, sent messages are
    /// neither delivered nor stored.
    pub async fn start_without_sequencer(edges: usize) -> Self {
        let parts = Parts {
            sequencer: false,
            ..Parts::ALL
        };
        Self::start_parts(edges, parts).await
    }

    /// On the run's broker and SQLite, with only `parts` of the consumers.
    async fn start_parts(edges: usize, parts: Parts) -> Self {
        let broker = Broker::start().await;
        Self::start_full(broker, edges, parts, TestStore::sqlite(), |_| {}).await
    }

    /// As [`Stack::start`], with the services on `store` (say, a keyspace
    /// on the test run's Cassandra).
    pub async fn start_on(edges: usize, store: TestStore) -> Self {
        Self::start_full(Broker::start().await, edges, Parts::ALL, store, |_| {}).await
    }

    /// As [`Stack::start_with`], on `broker`: a broker of the test's own
    /// ([`Broker::dedicated`]) that the test may stop and restart under the
    /// whole stack.
    pub async fn start_on_broker(
        broker: Broker,
        edges: usize,
        tweak: impl Fn(&mut EdgeSettings),
    ) -> Self {
        Self::start_full(broker, edges, Parts::ALL, TestStore::sqlite(), tweak).await
    }

    async fn start_full(
        broker: Broker,
        edges: usize,
        parts: Parts,
        store: TestStore,
        tweak: impl Fn(&mut EdgeSettings),
    ) -> Self {
        rill_runtime::telemetry::Telemetry::init_for_tests();
        let redis = Redis::start();
        let services = CancellationToken::new();

        let persist_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind persist");
        let persist = persist_listener.local_addr().expect("persist addr");
        if parts.persist {
            let persist_settings = rill_persist::PersistSettings {
                kafka: broker.kafka_settings(),
                group_id: broker.group_id("persist"),
                store: store.settings(),
                ..Default::default()
            };
            let persist_token = services.clone();
            tokio::spawn(async move {
                if let Err(err) =
                    rill_persist::run(persist_settings, persist_listener, persist_token).await
                {
                    panic!("persist failed: {err}");
                }
            });
        }

        let sequencer_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sequencer");
        let sequencer = sequencer_listener.local_addr().expect("sequencer addr");
        if parts.sequencer {
            let settings = sequencer_settings(&broker);
            let token = services.clone();
            tokio::spawn(async move {
                if let Err(err) = rill_sequencer::run(settings, sequencer_listener, token).await {
                    panic!("sequencer failed: {err}");
                }
            });
        }

        let api_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let api = api_listener.local_addr().expect("api addr");
        let mut api_settings = rill_api::ApiSettings {
            kafka: broker.kafka_settings(),
            store: store.settings(),
            redis: redis_settings(&redis),
            test_data: true,
            ..Default::default()
        };
        api_settings.session.cookie_key = Some(Secret::new(TEST_COOKIE_KEY));
        api_settings.api_keys.keys = vec![rill_auth::api_key::ApiKeyEntry {
            name: "test".into(),
            sha256: rill_auth::api_key::digest(TEST_API_KEY),
        }];
        // Tests call with the test key in bursts: the limit is the api
        // limit test's to tighten.
        api_settings.limits.calls_per_api_key = rill_runtime::rate_limit::Rate {
            per_second: 100_000.0,
            burst: 100_000,
        };
        // Tests log in often: a cheaper hash (argon2id all the same).
        api_settings.password.memory_kib = 8 * 1024;
        api_settings.password.iterations = 1;
        let api_token = services.clone();
        tokio::spawn(async move {
            if let Err(err) = rill_api::run(api_settings, api_listener, api_token).await {
                panic!("api failed: {err}");
            }
        });

        let mut handles = Vec::new();
        for n in 1..=edges {
            let mut settings = edge_settings(&broker, &redis, &store, n);
            tweak(&mut settings);
            handles.push(start_edge(settings).await);
        }
        let addrs: Vec<SocketAddr> = handles.iter().map(|e| e.addr).collect();
        let traefik = Traefik::start(&addrs, api).await;
        Self {
            broker,
            redis,
            store,
            edges: handles,
            api,
            persist,
            sequencer,
            traefik,
            services,
        }
    }

    /// A client that talks to the platform through Traefik.
    pub fn client(&self) -> Client {
        Client::new(&self.traefik.url())
    }

    /// A server's client (the test API key), through Traefik.
    pub fn server(&self) -> Client {
        self.client().with_api_key(TEST_API_KEY)
    }

    /// Signs up `name` with `password` through the api; the new user's id.
    pub async fn sign_up(&self, name: &str, password: &str) -> Uuid {
        created_id(
            self.client()
                .post_json(
                    "/api/signup",
                    &json!({ "name": name, "password": password }),
                )
                .await,
        )
        .await
    }

    /// A client that talks to edge `n` (0-based) directly.
    pub fn edge_client(&self, n: usize) -> Client {
        Client::new(&self.edges[n].url())
    }

    /// Creates a user through the api; its id.
    pub async fn create_user(&self, name: &str) -> Uuid {
        created_id(
            self.server()
                .post_json("/api/users", &json!({ "name": name }))
                .await,
        )
        .await
    }

    /// Creates a profile through the api; its id.
    pub async fn create_profile(&self, name: &str) -> Uuid {
        created_id(
            self.server()
                .post_json("/api/profiles", &json!({ "name": name }))
                .await,
        )
        .await
    }

    /// Binds `user` to `profile` through the api.
    pub async fn bind(&self, user: Uuid, profile: Uuid) {
        let response = self
            .server()
            .put(&format!("/api/profiles/{profile}/members/{user}"))
            .await;
        assert_eq!(response.status(), 204, "bind: {:?}", response.text().await);
    }

    /// A new user bound to every profile in `profiles`.
    pub async fn member_of(&self, profiles: &[Uuid]) -> Uuid {
        let user = self.create_user("Member").await;
        for profile in profiles {
            self.bind(user, *profile).await;
        }
        user
    }
}

async fn created_id(response: reqwest::Response) -> Uuid {
    assert_eq!(
        response.status(),
        201,
        "create: {:?}",
        response.text().await
    );
    let body: Value = response.json().await.expect("json");
    body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an id in the reply")
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.services.cancel();
    }
}

/// Settings that point at `redis`.
pub fn redis_settings(redis: &Redis) -> RedisSettings {
    RedisSettings {
        urls: vec![redis.url()],
        ..RedisSettings::default()
    }
}

/// Settings of edge number `n` against `broker`, `redis` and `store`.
pub fn edge_settings(broker: &Broker, redis: &Redis, store: &TestStore, n: usize) -> EdgeSettings {
    let mut settings = EdgeSettings {
        node_id: format!("edge-{n}"),
        ..EdgeSettings::default()
    };
    settings.kafka = broker.kafka_settings();
    settings.store = store.settings();
    settings.redis = redis_settings(redis);
    settings.session.cookie_key = Some(Secret::new(TEST_COOKIE_KEY));
    settings.tokens.hs256_keys = vec![rill_auth::token::HmacKey {
        kid: "test".into(),
        secret: Secret::new(TEST_TOKEN_SECRET),
    }];
    // Tests send bursts from one user (to fill a slow client's queue, to
    // write history): the send limits are the rate-limit test's to tighten.
    let unlimited = rill_runtime::rate_limit::Rate {
        per_second: 100_000.0,
        burst: 100_000,
    };
    settings.limits.sends_per_session = unlimited;
    settings.limits.sends_per_user = unlimited;
    // Every test client comes from 127.0.0.1 (through Traefik or not), and
    // tests reconnect one user often: the open limits are the limit tests'
    // to tighten.
    settings.limits.opens_per_user = unlimited;
    settings.limits.opens_per_address = unlimited;
    // Bursts of a few thousand messages (a restarted sequencer's backlog)
    // reach a reader at once; the slow-client and queue-bytes tests set
    // their own bounds.
    settings.limits.session_queue_depth = 8192;
    settings.limits.session_queue_bytes = 8 * 1024 * 1024;
    // Tests stop edges often: drain quickly.
    settings.drain.window_secs = Duration::from_secs(2);
    // Tests share two cores with everything else of the suite: a busy
    // moment must not take both edges out of Traefik (the availability
    // test sets its own thresholds).
    settings.availability.lag_warning_ms = Duration::from_secs(2);
    settings.availability.lag_critical_ms = Duration::from_secs(5);
    // Nor a slow answer of the shared broker (the broker-outage test sets
    // its own).
    settings.availability.kafka_unreachable_ms = Duration::from_secs(15);
    settings.drain.reconnect_jitter_ms = Duration::from_millis(100);
    // A busy moment of the shared machine must not make an edge look dead
    // to the others (the dead-edge tests run edge processes with the
    // default, 3 s).
    settings.edges.dead_after_ms = Duration::from_secs(6);
    settings
}

/// Starts an edge in this process on a free port, on a runtime of its own.
pub async fn start_edge(settings: EdgeSettings) -> EdgeHandle {
    use rill_runtime::settings::ServiceSettings as _;
    settings.validate().expect("test edge settings are valid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{}-rt", settings.node_id))
        .enable_all()
        .build()
        .expect("edge runtime");
    // Bound here, registered with the edge's runtime inside it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind edge");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("edge addr");
    let shutdown = CancellationToken::new();
    let edge = runtime
        .spawn(Edge::start(settings, shutdown.clone()))
        .await
        .expect("edge start task")
        .expect("edge starts");
    let id = edge.id().to_owned();
    let task = runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).expect("edge listener");
        edge.serve(listener).await;
    });
    EdgeHandle {
        id,
        addr,
        shutdown,
        task: Some(task),
        runtime: Some(runtime),
    }
}
