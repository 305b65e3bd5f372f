//! Whether this edge reaches Kafka, for `/readyz`: its producer asks the
//! brokers for the message topic's metadata every third of
//! `availability.kafka_unreachable_ms`; when no answer came for that long,
//! the edge is not ready. Sends would fail then (after
//! `kafka.message_timeout_ms`, with `unavailable`), and nothing new would
//! be delivered: the ingress sends new clients to an edge that reaches
//! Kafka, if there is one. Live sessions stay; they get what was sent
//! meanwhile once the broker is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_runtime::shutdown::CancellationToken;
use tokio::time::Instant;

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
        tokio::spawn(link.clone().probe(publisher, stop));
        link
    }

    /// Whether a broker answered within `availability.kafka_unreachable_ms`.
    pub fn reachable(&self) -> bool {
        self.answered().elapsed() < self.unreachable_after
    }

    fn answered(&self) -> Instant {
        *self.answered.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn probe(self: Arc<Self>, publisher: Arc<Publisher>, stop: CancellationToken) {
        let every = self.unreachable_after / 3;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_reachable = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let asked = Instant::now();
            // librdkafka's call blocks: on a thread of its own, which
            // shutdown does not wait for (as persist's lag probe).
            let (answer, answered) = tokio::sync::oneshot::channel();
            let publisher = publisher.clone();
            std::thread::spawn(move || {
                let _ = answer.send(publisher.brokers_answer(every));
            });
            let answered = tokio::select! {
                _ = stop.cancelled() => return,
                answered = answered => answered.unwrap_or(false),
            };
            if answered {
                *self.answered.lock().unwrap_or_else(|e| e.into_inner()) = asked;
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
        }
    }
}
