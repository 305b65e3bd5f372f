//! The read, copy, commit loop.
//!
//! One transaction per batch: begin; produce every message of the batch to
//! its profile's partition of the sequenced topic; add the batch's input
//! offsets to the transaction; commit. Kafka makes the copies and the
//! input offsets visible together or not at all. So after a crash (or an
//! aborted transaction) the batch is read again from the last committed
//! offsets and copied again, and readers with `read_committed` see each
//! message once: de-duplication by transaction, not by message id, because
//! a message's position is assigned when it is appended and a second copy
//! would be a second position.
//!
//! The batch is whatever arrived while the previous transaction committed
//! (at most `max_batch_records`), with no waiting to fill it: at low rates
//! a message waits one commit, at high rates the commits grow, not queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use rill_domain::{ChatMessage, ordering_partition};
use rill_runtime::backoff::Backoff;
use rill_runtime::internal_events::{InternalEvent as _, RecordSkipped};
use rill_runtime::kafka::partitions_of;
use rill_runtime::shutdown::CancellationToken;

use crate::metrics::SequencerMetrics;
use crate::settings::SequencerSettings;

/// How long one poll waits for a first record: bounds how late shutdown
/// is noticed.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a transactional call (init, offsets, commit, abort) may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long start-up waits for the broker's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause after an aborted transaction or a failed read.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error("cannot reach Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the sequenced topic {topic} has no partitions")]
    NoPartitions { topic: String },
    #[error(
        "the transactional producer cannot go on (fenced by another instance with this transactional_id, or refused by the broker): {0}"
    )]
    Fatal(KafkaError),
    #[error("the sequencer stopped unexpectedly")]
    Stopped,
}

/// What a batch copies: the records read, and per input partition the
/// offset of its first and after its last record.
#[derive(Debug, Default)]
struct Batch {
    copies: Vec<Copy>,
    read: usize,
    first_offsets: BTreeMap<i32, i64>,
    next_offsets: BTreeMap<i32, i64>,
}

/// One message on its way to the sequenced topic: its record, unchanged,
/// and the trace context of its copy.
#[derive(Debug)]
struct Copy {
    key: [u8; 16],
    partition: i32,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

pub struct Sequencer {
    consumer: BaseConsumer,
    producer: BaseProducer<DefaultProducerContext>,
    settings: SequencerSettings,
    /// Partitions of the sequenced topic.
    partitions: i32,
    metrics: Arc<SequencerMetrics>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("transactional_id", &self.settings.transactional_id)
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// Opens the transactional producer (which aborts whatever an earlier
    /// run under the same transactional id left open, and fences it) and
    /// joins the consumer group. Blocks.
    pub fn start(
        settings: SequencerSettings,
        metrics: Arc<SequencerMetrics>,
    ) -> Result<Self, SequencerError> {
        let kafka = &settings.kafka;
        let producer: BaseProducer<DefaultProducerContext> =
            rill_runtime::kafka::producer_config(kafka, &settings.transactional_id)
                .set("transactional.id", &settings.transactional_id)
                // Back-to-back transactions meet the broker still writing
                // the previous one's markers (CONCURRENT_TRANSACTIONS on
                // AddOffsetsToTxn); librdkafka retries after this, 100 ms
                // by default. Measured at 500 msg/s: p50 148 ms -> 48 ms.
                .set("retry.backoff.ms", "5")
                .set(
                    "transaction.timeout.ms",
                    settings.transaction_timeout_ms.as_millis().to_string(),
                )
                .create()?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(SequencerError::Fatal)?;
        let consumer: BaseConsumer =
            rill_runtime::kafka::group_consumer_config(kafka, &settings.group_id)
                .set("enable.auto.offset.store", "false")
                .create()?;
        let partitions = i32::try_from(
            partitions_of(&consumer, &kafka.sequenced_topic, METADATA_TIMEOUT)?.len(),
        )
        .unwrap_or(i32::MAX);
        if partitions == 0 {
            return Err(SequencerError::NoPartitions {
                topic: kafka.sequenced_topic.clone(),
            });
        }
        consumer.subscribe(&[&kafka.message_topic])?;
        tracing::info!(
            transactional_id = %settings.transactional_id,
            partitions,
            "sequencer started"
        );
        Ok(Self {
            consumer,
            producer,
            settings,
            partitions,
            metrics,
        })
    }

    /// Copies batches until `shutdown`. Blocks; returns an error only when
    /// the producer cannot go on.
    pub fn run(self, shutdown: &CancellationToken) -> Result<(), SequencerError> {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        while !shutdown.is_cancelled() {
            let batch = self.next_batch();
            if batch.read == 0 {
                continue;
            }
            let started = Instant::now();
            match self.commit(&batch) {
                Ok(()) => {
                    backoff.reset();
                    self.metrics
                        .messages_sequenced
                        .inc_by(batch.copies.len() as u64);
                    self.metrics.transaction_records.observe(batch.read as f64);
                    self.metrics
                        .transaction_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                Err(err) if is_fatal(&err) => {
                    tracing::error!(error = %err, "transactional producer failed for good");
                    return Err(SequencerError::Fatal(err));
                }
                Err(err) => {
                    self.metrics.transactions_aborted.inc();
                    let pause = backoff.next_pause();
                    tracing::warn!(error = %err, records = batch.read, retry_in = ?pause, "transaction failed; aborting and reading the batch again");
                    if let Err(err) = self.producer.abort_transaction(TXN_TIMEOUT) {
                        if is_fatal(&err) {
                            return Err(SequencerError::Fatal(err));
                        }
                        tracing::warn!(error = %err, "abort failed");
                    }
                    self.rewind(&batch);
                    std::thread::sleep(pause);
                }
            }
        }
        tracing::info!("sequencer stopped");
        Ok(())
    }

    /// Waits up to [`POLL_WAIT`] for a first record, then takes whatever
    /// else is already there, up to `max_batch_records`.
    fn next_batch(&self) -> Batch {
        let mut batch = Batch::default();
        let mut wait = POLL_WAIT;
        while batch.read < self.settings.max_batch_records {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(record)) => self.add(&mut batch, &record),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "Kafka read failed");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        batch
    }

    /// Adds `record` to the batch: a copy of it for its profile's
    /// partition, or (undecodable) nothing but its offset, which is
    /// committed with the rest so that it is not read again.
    fn add(&self, batch: &mut Batch, record: &BorrowedMessage<'_>) {
        batch.read += 1;
        let partition = record.partition();
        batch
            .first_offsets
            .entry(partition)
            .or_insert(record.offset());
        batch.next_offsets.insert(partition, record.offset() + 1);
        let payload = record.payload().unwrap_or_default();
        let message = match ChatMessage::decode(payload, self.settings.max_message_bytes) {
            Ok(message) => message,
            Err(err) => {
                return RecordSkipped {
                    record,
                    error: &err,
                    counter: &self.metrics.records_invalid,
                }
                .emit();
            }
        };
        let span = tracing::info_span!("sequence message", message_id = %message.id, profile_id = %message.profile_id);
        rill_runtime::trace_context::set_parent_from(&span, record.headers());
        let headers = span.in_scope(rill_runtime::trace_context::current_headers);
        batch.copies.push(Copy {
            key: message.profile_id.as_uuid().into_bytes(),
            partition: ordering_partition(message.profile_id, self.partitions),
            payload: payload.to_vec(),
            headers,
        });
    }

    /// Copies the batch and commits its input offsets, in one transaction.
    fn commit(&self, batch: &Batch) -> Result<(), KafkaError> {
        let topic = &self.settings.kafka.sequenced_topic;
        self.producer.begin_transaction()?;
        for copy in &batch.copies {
            let mut record = BaseRecord::to(topic)
                .partition(copy.partition)
                .key(&copy.key[..])
                .payload(&copy.payload[..])
                .headers(copy.headers.clone());
            // A full local queue empties as the broker's answers are
            // served.
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(1));
                    }
                    Err((err, _)) => return Err(err),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in &batch.next_offsets {
            offsets.add_partition_offset(
                &self.settings.kafka.message_topic,
                *partition,
                Offset::Offset(*offset),
            )?;
        }
        let group = self.consumer.group_metadata().ok_or(KafkaError::Canceled)?;
        self.producer
            .send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        self.serve_delivery_reports();
        self.producer.commit_transaction(TXN_TIMEOUT)
    }

    /// Waits for the broker's answers to the batch's copies, serving them
    /// as they come. `commit_transaction` would wait for them too, but in
    /// polls of up to 100 ms that an answer already there does not end
    /// (rdkafka's flush): every commit took 100 ms, whatever its size.
    /// Failed copies fail the commit.
    fn serve_delivery_reports(&self) {
        let deadline = Instant::now() + TXN_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
    }

    /// After an aborted transaction: reads the batch again from its first
    /// records (partitions this member no longer owns are left to their
    /// new owner, which starts from the committed offsets).
    fn rewind(&self, batch: &Batch) {
        for (partition, offset) in &batch.first_offsets {
            if let Err(err) = self.consumer.seek(
                &self.settings.kafka.message_topic,
                *partition,
                Offset::Offset(*offset),
                POLL_WAIT,
            ) {
                tracing::info!(partition, error = %err, "cannot rewind a partition (no longer assigned?)");
            }
        }
    }
}

/// Whether the transactional producer is done for: it was fenced, or the
/// broker refused it for good. Everything else aborts the transaction and
/// tries the batch again.
fn is_fatal(err: &KafkaError) -> bool {
    match err {
        KafkaError::Transaction(err) => err.is_fatal(),
        _ => false,
    }
}
