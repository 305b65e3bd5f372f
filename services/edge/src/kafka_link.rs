//! Whether this edge reaches Kafka, for `/readyz`: its producer asks the
//! brokers for the message topic's metadata every third of
//! `availability.kafka_unreachable_ms`; when no answer came for that long,
//! the edge is not ready. Sends would fail then (after
//! `kafka.message_timeout_ms`, with `unavailable`), and nothing new would
//! be delivered: the ingress sends new clients to an edge that reaches
//! Kafka, if there is one. Live sessions stay; they get what was sent
//! meanwhile once the broker is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_runtime::shutdown::CancellationToken;

use crate::to_kafka::Publisher;

#[derive(Debug)]
pub struct KafkaLink {
    /// When a broker last answered (start-up counts as an answer: the edge
    /// read the topics' ends to start).
    answered: Mutex<Instant>,
    unreachable_after: Duration,
}

impl KafkaLink {
    /// A link taken for lost after `unreachable_after` without an answer;
    /// probes through `publisher` until `stop`.
    pub fn start(
        publisher: Arc<Publisher>,
        unreachable_after: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let link = Arc::new(Self {
            answered: Mutex::new(Instant::now()),
            unreachable_after,
        });
        let probing = link.clone();
        std::thread::Builder::new()
            .name("kafka-link".into())
            .spawn(move || probing.probe(publisher, stop))
            .expect("a thread for the Kafka probe");
        link
    }

    /// Whether a broker answered within `availability.kafka_unreachable_ms`.
    pub fn reachable(&self) -> bool {
        self.answered().elapsed() < self.unreachable_after
    }

    fn answered(&self) -> Instant {
        *self.answered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks every third of `unreachable_after`, on a thread of its own
    /// (librdkafka's call blocks; one thread, whatever the broker does),
    /// which shutdown does not wait for.
    fn probe(self: Arc<Self>, publisher: Arc<Publisher>, stop: CancellationToken) {
        let every = self.unreachable_after / 3;
        let mut was_reachable = true;
        while !stop.is_cancelled() {
            let asked = Instant::now();
            match publisher.brokers_answer(every) {
                Ok(()) => *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = asked,
                Err(err) => tracing::debug!(error = %err, "Kafka did not answer the probe"),
            }
            let reachable = self.reachable();
            if reachable != was_reachable {
                if reachable {
                    tracing::info!("Kafka answers again: ready");
                } else {
                    tracing::warn!(
                        silent_ms = self.answered().elapsed().as_millis() as u64,
                        "Kafka does not answer: not ready (sends fail after kafka.message_timeout_ms)"
                    );
                }
                was_reachable = reachable;
            }
            std::thread::sleep(every.saturating_sub(asked.elapsed()));
        }
    }
}
