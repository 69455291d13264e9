//! Writing generated payments to Kafka at a given rate: the load of `payments-gen`, the
//! fraud demo and the benchmarks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_dsl::kafka::KafkaConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::payments::PaymentProfile;

/// What to write: payments `start..start + count` of `profile` to `topic`, keyed by user.
#[derive(Clone, Debug)]
pub struct PaymentLoad {
    /// The stream's shape and seed.
    pub profile: PaymentProfile,
    /// Topic to write to.
    pub topic: String,
    /// First payment index.
    pub start: u64,
    /// Number of payments (`u64::MAX`: until stopped).
    pub count: u64,
    /// Payments per second (0: as fast as the broker takes them).
    pub rate: u64,
    /// One malformed record after every this many payments (0: none).
    pub malformed_every: u64,
}

/// Progress shared with whoever watches the load.
#[derive(Debug, Default)]
pub struct LoadProgress {
    /// Payments handed to the producer so far.
    pub sent: AtomicU64,
    /// Malformed records handed to the producer so far.
    pub malformed: AtomicU64,
    /// Set (by anyone) to stop early.
    pub stop: AtomicBool,
    /// When the load started: payment `i` is due at `started + i / rate`.
    pub started: std::sync::OnceLock<Instant>,
}

impl PaymentLoad {
    /// Writes the load with a producer for `config`, returning when it is written and
    /// acknowledged, or when `progress.stop` is set (what was sent is flushed first).
    pub fn run(&self, config: &KafkaConfig, progress: &LoadProgress) -> anyhow::Result<()> {
        let producer: BaseProducer = config
            .client_config(&[("linger.ms", "5"), ("queue.buffering.max.messages", "1000000")])
            .create()?;
        let started = *progress.started.get_or_init(Instant::now);
        let mut payload = Vec::with_capacity(160);
        let mut key = String::with_capacity(16);
        let end = self.start.saturating_add(self.count);
        let mut sent = 0u64;
        for i in self.start..end {
            if progress.stop.load(Ordering::Relaxed) {
                break;
            }
            let p = self.profile.payment(i);
            payload.clear();
            serde_json::to_writer(&mut payload, &p)?;
            key.clear();
            use std::fmt::Write as _;
            let _ = write!(key, "{}", p.user_id);
            send(&producer, &self.topic, &key, &payload)?;
            if self.malformed_every > 0 && i % self.malformed_every == self.malformed_every - 1 {
                let bad = format!("{{\"user_id\":\"{}\",\"status\":\"MAYBE\"}}", p.user_id);
                send(&producer, &self.topic, &key, bad.as_bytes())?;
                progress.malformed.fetch_add(1, Ordering::Relaxed);
            }
            sent += 1;
            progress.sent.store(sent, Ordering::Relaxed);
            if self.rate > 0 && sent.is_multiple_of(100) {
                let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    producer.poll(wait);
                }
            }
        }
        producer.flush(Duration::from_secs(60))?;
        Ok(())
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}
