//! Writes to the directory go through Kafka: the api publishes the event and
//! the persistence consumer writes it to the store. So that a client can
//! read its own writes, the api then waits (at most
//! `consistency_timeout_ms`) until the store shows the change, and only then
//! answers 200/201; past the wait it answers 202 Accepted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rill_domain::{DirectoryChange, DirectoryEvent};
use rill_runtime::backoff::Backoff;
use rill_store::{Store, StoreError};

use crate::error::ApiError;
use crate::metrics::ApiMetrics;

/// First and longest pause between two looks at the store.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

/// Whether a write was seen in the store before the api answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Visible,
    Pending,
}

pub struct Directory {
    producer: FutureProducer,
    topic: String,
    send_timeout: Duration,
    store: Arc<dyn Store>,
    consistency_timeout: Duration,
    metrics: Arc<ApiMetrics>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        send_timeout: Duration,
        store: Arc<dyn Store>,
        consistency_timeout: Duration,
        metrics: Arc<ApiMetrics>,
    ) -> Self {
        Self {
            producer,
            topic,
            send_timeout,
            store,
            consistency_timeout,
            metrics,
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Publishes `changes` (each keyed as the design says) and waits until
    /// Kafka acknowledged all of them. Each record carries the trace context
    /// of this call's span, which persist's write links to.
    #[tracing::instrument(name = "publish directory changes", skip_all, fields(changes = changes.len()))]
    pub async fn publish(&self, changes: Vec<DirectoryChange>) -> Result<(), ApiError> {
        let now = now_ms();
        let events: Vec<DirectoryEvent> = changes
            .into_iter()
            .map(|c| DirectoryEvent::new(c, now))
            .collect();
        let sends = events.iter().map(|event| async move {
            let key = event.key();
            let payload = event.encode();
            let record = FutureRecord::to(&self.topic)
                .key(&key)
                .payload(&payload)
                .headers(rill_runtime::trace_context::current_headers());
            self.producer
                .send(record, self.send_timeout)
                .await
                .map(|_| ())
                .map_err(|(err, _)| err)
        });
        for result in futures_util::future::join_all(sends).await {
            result?;
            self.metrics.directory_events_published.inc();
        }
        Ok(())
    }

    /// Publishes one change and waits until `visible` says the store shows
    /// it: the shape of every single write the api makes.
    pub async fn write<F, Fut>(
        &self,
        change: DirectoryChange,
        visible: F,
    ) -> Result<Visibility, ApiError>
    where
        F: Fn(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<bool, StoreError>>,
    {
        self.publish(vec![change]).await?;
        self.wait_until(visible).await
    }

    /// Waits until `visible` says the store shows the write, at most the
    /// consistency timeout.
    pub async fn wait_until<F, Fut>(&self, visible: F) -> Result<Visibility, ApiError>
    where
        F: Fn(Arc<dyn Store>) -> Fut,
        Fut: Future<Output = Result<bool, StoreError>>,
    {
        let started = tokio::time::Instant::now();
        let deadline = started + self.consistency_timeout;
        let mut backoff = Backoff::new(POLL_FIRST, POLL_MAX);
        loop {
            if visible(self.store.clone()).await? {
                self.metrics
                    .write_visible_seconds
                    .observe(started.elapsed().as_secs_f64());
                return Ok(Visibility::Visible);
            }
            let pause = backoff.next_pause();
            if tokio::time::Instant::now() + pause > deadline {
                tracing::warn!(timeout = ?self.consistency_timeout, "write not yet visible in the store");
                self.metrics.writes_pending.inc();
                return Ok(Visibility::Pending);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

pub use rill_runtime::clock::now_ms;
