//! The live operations page: `GET /api/ops` (a page with no data in it, for
//! anyone) and `GET /api/ops/stream` (Server-Sent Events, for a server API
//! key only), which every `ops.interval_ms` sends a [`Snapshot`]: each
//! edge's availability, sessions, sends and deliveries per second, the
//! persistence consumer's lag per topic, and whether Redis and the store
//! answer this api.
//!
//! - [`Collector`]: scrapes while someone watches, and shares each
//!   snapshot with every stream (one scrape however many operators).
//! - [`prometheus`]: reads the scraped `/metrics`.
//! - [`page`]: the page's files and the stream's route.

pub mod page;
pub mod prometheus;
mod scrape;

use std::collections::BTreeMap;
use std::sync::Arc;

use rill_runtime::shutdown::CancellationToken;
use rill_sessions::Nodes;
use rill_store::Store;
use serde::Serialize;
use tokio::sync::watch;

use crate::settings::OpsSettings;

/// What the page shows at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken, ms since the Unix epoch.
    pub at_ms: u64,
    pub edges: Vec<EdgeView>,
    pub persist: Option<PersistView>,
    pub redis: Health,
    pub store: Health,
}

/// One edge, as its `/metrics` and `/readyz` tell.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EdgeView {
    pub url: String,
    /// Its `/metrics` answered.
    pub up: bool,
    /// Its `/readyz` answered 200.
    pub ready: bool,
    /// `available`, `warning` or `critical` (`rill_edge_availability`).
    pub availability: Option<&'static str>,
    pub sessions: Option<f64>,
    /// Rates between this scrape and the one before; none on the first.
    pub sends_per_sec: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub error: Option<String>,
}

/// The persistence consumer's lag per topic (`rill_persist_consumer_lag`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PersistView {
    pub url: String,
    pub up: bool,
    pub lag: BTreeMap<String, f64>,
    pub error: Option<String>,
}

/// Whether a dependency answered this api, and how fast.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    pub ms: f64,
    pub error: Option<String>,
}

/// The newest snapshot, as the JSON every stream sends; none before the
/// first scrape.
pub type Latest = Option<Arc<str>>;

/// Scrapes every `ops.interval_ms` while at least one stream is open.
#[derive(Debug, Clone)]
pub struct Collector {
    latest: Arc<watch::Sender<Latest>>,
    shutdown: CancellationToken,
}

impl Collector {
    /// Starts scraping on a task of its own until `shutdown`.
    pub fn spawn(
        settings: OpsSettings,
        redis: Nodes,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Self {
        let (latest, _) = watch::channel(None);
        let latest = Arc::new(latest);
        let collector = Self {
            latest: latest.clone(),
            shutdown: shutdown.clone(),
        };
        let mut scraper = scrape::Scraper::new(settings.clone(), redis, store);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(settings.interval_ms);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                if latest.receiver_count() == 0 {
                    continue;
                }
                let snapshot = scraper.scrape().await;
                match serde_json::to_string(&snapshot) {
                    Ok(json) => {
                        latest.send_replace(Some(json.into()));
                    }
                    Err(err) => tracing::warn!(error = %err, "ops snapshot not encoded"),
                }
            }
        });
        collector
    }

    /// Follows the snapshots: the newest first, if there is one.
    pub fn subscribe(&self) -> watch::Receiver<Latest> {
        self.latest.subscribe()
    }
}
