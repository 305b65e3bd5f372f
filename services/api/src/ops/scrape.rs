//! One scrape of everything the operations page shows. Rates are counted
//! between two scrapes, so the scraper keeps each edge's previous totals.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rill_sessions::Nodes;
use rill_store::Store;

use super::prometheus::{self, Sample};
use super::{EdgeView, Health, PersistView, Snapshot};
use crate::settings::OpsSettings;

/// An edge's counters at one scrape.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    sends: f64,
    deliveries: f64,
}

pub(super) struct Scraper {
    settings: OpsSettings,
    http: reqwest::Client,
    redis: Nodes,
    store: Arc<dyn Store>,
    /// Each edge's totals at the scrape before, by URL.
    previous: HashMap<String, Totals>,
}

#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
}

impl Scraper {
    pub(super) fn new(settings: OpsSettings, redis: Nodes, store: Arc<dyn Store>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.scrape_timeout_ms)
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            redis,
            store,
            previous: HashMap::new(),
        }
    }

    pub(super) async fn scrape(&mut self) -> Snapshot {
        let edges = join_all(self.settings.edges.iter().map(|url| self.edge(url)));
        let persist = async {
            match &self.settings.persist {
                Some(url) => Some(self.persist(url).await),
                None => None,
            }
        };
        let redis = timed(self.settings.scrape_timeout_ms, async {
            self.redis.ping().await.map_err(|e| e.to_string())
        });
        let store = timed(self.settings.scrape_timeout_ms, async {
            // A read of a user no one is: the cheapest query every store has.
            let nobody = rill_domain::UserId::from_uuid(uuid::Uuid::nil());
            self.store
                .user(nobody)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let (edges, persist, redis, store) = tokio::join!(edges, persist, redis, store);
        let edges = edges
            .into_iter()
            .map(|(mut view, totals)| {
                if let Some(now) = totals {
                    if let Some(before) = self.previous.get(&view.url) {
                        let secs = now.at.duration_since(before.at).as_secs_f64();
                        // A restarted edge counts from 0 again: no rate then.
                        let rate = |now: f64, before: f64| {
                            (secs > 0.0 && now >= before).then(|| (now - before) / secs)
                        };
                        view.sends_per_sec = rate(now.sends, before.sends);
                        view.deliveries_per_sec = rate(now.deliveries, before.deliveries);
                    }
                    self.previous.insert(view.url.clone(), now);
                }
                view
            })
            .collect();
        Snapshot {
            at_ms: u64::try_from(rill_runtime::clock::now_ms()).unwrap_or_default(),
            edges,
            persist,
            redis,
            store,
        }
    }

    async fn edge(&self, url: &str) -> (EdgeView, Option<Totals>) {
        let mut view = EdgeView {
            url: url.to_owned(),
            ..EdgeView::default()
        };
        let (metrics, ready) = tokio::join!(
            self.metrics(url),
            self.http.get(format!("{url}/readyz")).send()
        );
        view.ready = ready.is_ok_and(|r| r.status().is_success());
        let samples = match metrics {
            Ok(samples) => samples,
            Err(err) => {
                view.error = Some(err.to_string());
                return (view, None);
            }
        };
        view.up = true;
        view.availability =
            prometheus::sum(&samples, "rill_edge_availability").map(|level| match level as i64 {
                0 => "available",
                1 => "warning",
                _ => "critical",
            });
        view.sessions = prometheus::sum(&samples, "rill_edge_live_sessions");
        let totals = Totals {
            at: Instant::now(),
            sends: prometheus::sum(&samples, "rill_edge_sends_accepted_total").unwrap_or(0.0),
            deliveries: prometheus::sum(&samples, "rill_edge_delivered_events_total")
                .unwrap_or(0.0),
        };
        (view, Some(totals))
    }

    async fn persist(&self, url: &str) -> PersistView {
        let mut view = PersistView {
            url: url.to_owned(),
            ..PersistView::default()
        };
        match self.metrics(url).await {
            Ok(samples) => {
                view.up = true;
                for sample in samples
                    .iter()
                    .filter(|s| s.name == "rill_persist_consumer_lag")
                {
                    if let Some((_, topic)) = sample.labels.iter().find(|(k, _)| k == "topic") {
                        *view.lag.entry(topic.clone()).or_default() += sample.value;
                    }
                }
            }
            Err(err) => view.error = Some(err.to_string()),
        }
        view
    }

    async fn metrics(&self, url: &str) -> Result<Vec<Sample>, ScrapeError> {
        let response = self.http.get(format!("{url}/metrics")).send().await?;
        if !response.status().is_success() {
            return Err(ScrapeError::Status(response.status()));
        }
        Ok(prometheus::parse(&response.text().await?))
    }
}

/// Runs a health check with a deadline, timing it.
async fn timed(limit: Duration, check: impl Future<Output = Result<(), String>>) -> Health {
    let start = Instant::now();
    let outcome = tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} ms", limit.as_millis())));
    Health {
        ok: outcome.is_ok(),
        ms: start.elapsed().as_secs_f64() * 1000.0,
        error: outcome.err(),
    }
}
