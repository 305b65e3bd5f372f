//! The consumer loop: read a batch of records from the directory and message
//! topics, write it to the store, and only then commit the offsets. A crash
//! anywhere before the commit replays the batch, which the store's
//! idempotent writes absorb: at least once, never lost, never doubled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use rill_domain::{ChatMessage, DirectoryEvent, Sequenced};
use rill_runtime::Topic;
use rill_runtime::backoff::Backoff;
use rill_runtime::internal_events::{InternalEvent as _, RecordSkipped};
use rill_runtime::shutdown::CancellationToken;
use rill_runtime::trace_context::{self, SpanContext};
use rill_store::Store;
use tracing::Instrument as _;

use crate::metrics::PersistMetrics;
use crate::settings::PersistSettings;

/// First and longest pause between retries of a failed store write (or
/// Kafka read).
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long shutdown waits for the consumer to leave its group.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What one batch holds, split by kind, in the order read.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<DirectoryEvent>,
    /// Each message with its record's offset: its position.
    messages: Vec<Sequenced>,
    records: usize,
    /// The offset after the batch's last record, per partition: what is
    /// committed once the batch is written.
    next_offsets: BTreeMap<(String, i32), i64>,
    /// The trace context of each record written, for the write's span.
    links: Vec<SpanContext>,
}

impl Batch {
    /// The batch's offsets to commit.
    fn commit_list(&self) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.next_offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        Ok(list)
    }
}

pub struct PersistConsumer {
    consumer: StreamConsumer,
    store: Arc<dyn Store>,
    settings: PersistSettings,
    metrics: Arc<PersistMetrics>,
}

impl std::fmt::Debug for PersistConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistConsumer")
            .field("group_id", &self.settings.group_id)
            .finish_non_exhaustive()
    }
}

impl PersistConsumer {
    /// Joins the consumer group and subscribes to both topics.
    pub fn new(
        settings: PersistSettings,
        store: Arc<dyn Store>,
        metrics: Arc<PersistMetrics>,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer =
            rill_runtime::kafka::group_consumer_config(&settings.kafka, &settings.group_id)
                .create()?;
        consumer.subscribe(&[
            &settings.kafka.directory_topic,
            &settings.kafka.sequenced_topic,
        ])?;
        Ok(Self {
            consumer,
            store,
            settings,
            metrics,
        })
    }

    /// Writes batches until `shutdown`; the batch in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = self.next_batch() => batch,
            };
            if batch.records == 0 {
                continue;
            }
            if !self.write(&batch, &shutdown).await {
                break; // shut down before the write succeeded: nothing committed
            }
            // The batch's own offsets, not the consumer's position: an
            // asynchronous commit of "the current position" is resolved when
            // librdkafka sends it, by when the next batch may have been read
            // (not written); a crash then lost that batch (the kill -9 test
            // found it).
            // Asynchronous: a synchronous commit blocks this thread until
            // the broker answers, for ever if it is gone (a test's broker
            // stopped first hung the process on it). A commit that fails
            // is covered by the next one; if none comes, the batch is read
            // and written again: harmless.
            let committed = batch
                .commit_list()
                .and_then(|list| self.consumer.commit(&list, CommitMode::Async));
            if let Err(err) = committed {
                tracing::warn!(error = %err, "offset commit failed");
            }
        }
        tracing::info!("persist consumer stopped");
        let Self { consumer, .. } = self;
        close(consumer).await;
    }

    /// Waits for a first record, then gathers more for at most
    /// `batch.max_wait_ms`, up to `batch.max_records`.
    async fn next_batch(&self) -> Batch {
        let mut batch = Batch::default();
        while batch.records == 0 {
            let first = self.recv().await;
            self.add(&mut batch, &first);
        }
        let deadline = tokio::time::Instant::now() + self.settings.batch.max_wait_ms;
        while batch.records < self.settings.batch.max_records {
            match tokio::time::timeout_at(deadline, self.recv()).await {
                Ok(record) => self.add(&mut batch, &record),
                Err(_) => break,
            }
        }
        batch
    }

    async fn recv(&self) -> BorrowedMessage<'_> {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        loop {
            match self.consumer.recv().await {
                Ok(record) => return record,
                // The client reconnects by itself: read on (a back-off
                // per queued event held the records behind them).
                Err(err) if rill_runtime::kafka::is_connection_event(&err) => {
                    tracing::warn!(error = %err, "Kafka connection lost; the client reconnects");
                }
                Err(err) => {
                    let pause = backoff.next_pause();
                    tracing::warn!(error = %err, retry_in = ?pause, "Kafka read failed; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Adds `record` to the batch (an undecodable one is counted and
    /// skipped).
    fn add(&self, batch: &mut Batch, record: &BorrowedMessage<'_>) {
        batch.records += 1;
        batch.next_offsets.insert(
            (record.topic().to_owned(), record.partition()),
            record.offset() + 1,
        );
        let payload = record.payload().unwrap_or_default();
        let decoded: Result<(), Box<dyn std::fmt::Display>> =
            match self.settings.kafka.topic(record.topic()) {
                Some(Topic::Directory) => DirectoryEvent::decode(payload)
                    .map(|e| batch.events.push(e))
                    .map_err(|e| Box::new(e) as _),
                Some(Topic::Sequenced) => match u64::try_from(record.offset()) {
                    Ok(offset) => {
                        ChatMessage::decode(payload, self.settings.batch.max_message_bytes)
                            .map(|message| batch.messages.push(Sequenced { message, offset }))
                            .map_err(|e| Box::new(e) as _)
                    }
                    Err(_) => Err(Box::new("a negative offset: no position")),
                },
                Some(Topic::Messages | Topic::Push | Topic::Presence) | None => {
                    Err(Box::new("not a topic persist reads"))
                }
            };
        match decoded {
            Ok(()) => batch
                .links
                .extend(trace_context::link_from(record.headers())),
            Err(err) => RecordSkipped {
                record,
                error: &err,
                counter: &self.metrics.records_invalid,
            }
            .emit(),
        }
    }

    /// Writes the batch, retrying with back-off until it succeeds. False if
    /// shutdown came first. One span, "write batch", covers the write with
    /// its retries; it is linked to the trace of each record written (a
    /// span has one parent, a batch many records): the sequencer's
    /// "sequence message" span of each message, the api's "publish
    /// directory changes" of each directory event.
    async fn write(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let span = tracing::info_span!(
            "write batch",
            records = batch.records,
            events = batch.events.len(),
            messages = batch.messages.len(),
            attempts = tracing::field::Empty,
        );
        trace_context::add_links(&span, &batch.links);
        self.write_with_retries(batch, shutdown)
            .instrument(span)
            .await
    }

    async fn write_with_retries(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            tracing::Span::current().record("attempts", attempts);
            let started = Instant::now();
            match self.write_once(batch).await {
                Ok(()) => {
                    self.metrics.batch_records.observe(batch.records as f64);
                    self.metrics
                        .batch_write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .directory_events_written
                        .inc_by(batch.events.len() as u64);
                    self.metrics
                        .messages_written
                        .inc_by(batch.messages.len() as u64);
                    return true;
                }
                Err(err) => {
                    let pause = backoff.next_pause();
                    self.metrics.write_failures.inc();
                    tracing::error!(error = %err, retry_in = ?pause, "store write failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    async fn write_once(&self, batch: &Batch) -> Result<(), rill_store::StoreError> {
        if !batch.events.is_empty() {
            self.store.apply(&batch.events).await?;
        }
        if !batch.messages.is_empty() {
            self.store.append_messages(&batch.messages).await?;
        }
        Ok(())
    }
}

/// Closes `consumer` (it leaves its group) on a thread of its own, waiting
/// at most [`CLOSE_WAIT`]: rdkafka's close waits for the group coordinator
/// for ever when the broker is gone, which kept the process from exiting.
async fn close(consumer: StreamConsumer) {
    let (closed, wait) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    if tokio::time::timeout(CLOSE_WAIT, wait).await.is_err() {
        tracing::warn!(
            "the Kafka consumer did not leave its group in time: left to the broker's session timeout"
        );
    }
}
