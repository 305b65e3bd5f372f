//! A whole local platform for one test: broker, edges, api and Traefik.

use std::net::SocketAddr;

use rill_edge::{Edge, EdgeSettings};
use rill_runtime::Secret;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::client::Client;
use crate::traefik::Traefik;

/// The cookie key every service of a test stack shares.
pub const TEST_COOKIE_KEY: &str =
    "test-cookie-key-test-cookie-key-test-cookie-key-test-cookie-key-0123456789";

/// An edge running in the test process.
#[derive(Debug)]
pub struct EdgeHandle {
    pub id: String,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl EdgeHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the edge and waits until it has stopped.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug)]
pub struct Stack {
    pub broker: Broker,
    pub edges: Vec<EdgeHandle>,
    pub api: SocketAddr,
    pub traefik: Traefik,
    api_shutdown: CancellationToken,
}

impl Stack {
    /// A broker, `edges` edges with default settings, the api, and Traefik.
    pub async fn start(edges: usize) -> Self {
        Self::start_with(edges, |_| {}).await
    }

    /// As [`Stack::start`], with each edge's settings changed by `tweak`.
    pub async fn start_with(edges: usize, tweak: impl Fn(&mut EdgeSettings)) -> Self {
        rill_runtime::telemetry::Telemetry::init_for_tests();
        let broker = Broker::start().await;
        let mut handles = Vec::new();
        for n in 1..=edges {
            let mut settings = edge_settings(&broker, n);
            tweak(&mut settings);
            handles.push(start_edge(settings).await);
        }
        let api_shutdown = CancellationToken::new();
        let api_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let api = api_listener.local_addr().expect("api addr");
        let api_settings = rill_api::ApiSettings {
            kafka: broker.kafka_settings(),
            ..Default::default()
        };
        tokio::spawn(rill_api::serve(
            api_settings,
            api_listener,
            api_shutdown.clone(),
        ));
        let addrs: Vec<SocketAddr> = handles.iter().map(|e| e.addr).collect();
        let traefik = Traefik::start(&addrs, api).await;
        Self {
            broker,
            edges: handles,
            api,
            traefik,
            api_shutdown,
        }
    }

    /// A client that talks to the platform through Traefik.
    pub fn client(&self) -> Client {
        Client::new(&self.traefik.url())
    }

    /// A client that talks to edge `n` (0-based) directly.
    pub fn edge_client(&self, n: usize) -> Client {
        Client::new(&self.edges[n].url())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.api_shutdown.cancel();
    }
}

/// Settings of edge number `n` against `broker`.
pub fn edge_settings(broker: &Broker, n: usize) -> EdgeSettings {
    let mut settings = EdgeSettings {
        node_id: format!("edge-{n}"),
        ..EdgeSettings::default()
    };
    settings.kafka = broker.kafka_settings();
    settings.session.cookie_key = Some(Secret::new(TEST_COOKIE_KEY));
    settings
}

/// Starts an edge in this process on a free port.
pub async fn start_edge(settings: EdgeSettings) -> EdgeHandle {
    use rill_runtime::settings::ServiceSettings as _;
    settings.validate().expect("test edge settings are valid");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
    let addr = listener.local_addr().expect("edge addr");
    let shutdown = CancellationToken::new();
    let edge = Edge::start(settings, shutdown.clone())
        .await
        .expect("edge starts");
    let id = edge.id().to_owned();
    let task = tokio::spawn(edge.serve(listener));
    EdgeHandle {
        id,
        addr,
        shutdown,
        task: Some(task),
    }
}
