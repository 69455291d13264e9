//! Writing generated payments to Kafka at a given rate: the load of `payments-gen`, the
//! fraud demo and the benchmarks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_dsl::kafka::KafkaConfig;
use floe_dsl::metrics::Counter;
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
    /// Set with [`stay_ahead_of`](Self::stay_ahead_of): the reader the load waits for.
    pub reader: std::sync::OnceLock<Reader>,
}

/// Records read of the load so far (by whoever reads it, e.g. a job's Kafka source), and how
/// far the load may run ahead of them.
#[derive(Clone, Debug)]
pub struct Reader {
    /// Records read (payments and malformed ones).
    pub read: Counter,
    /// Records handed to the producer and not read yet, at most.
    pub max_ahead: u64,
}

impl LoadProgress {
    /// Makes the load wait while it is more than `max_ahead` records ahead of `read`: for
    /// brokers that keep a bounded log (librdkafka's mock cluster keeps the last 5 MB of each
    /// partition), where a load written faster than it is read would be deleted unread.
    /// Set it before the load starts; only the first call counts.
    pub fn stay_ahead_of(&self, read: Counter, max_ahead: u64) {
        let _ = self.reader.set(Reader { read, max_ahead });
    }

    /// Records handed to the producer so far, payments and malformed ones.
    pub fn written(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.malformed.load(Ordering::Relaxed)
    }

    /// Waits (serving `producer`'s delivery reports) while the load is too far ahead of its
    /// reader, or until it is stopped.
    fn wait_for_reader(&self, producer: &BaseProducer) {
        let Some(reader) = self.reader.get() else {
            return;
        };
        while self.written().saturating_sub(reader.read.get()) > reader.max_ahead && !self.stop.load(Ordering::Relaxed)
        {
            producer.poll(Duration::from_millis(1));
        }
    }
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
            if sent.is_multiple_of(100) {
                progress.wait_for_reader(&producer);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use floe_dsl::kafka::testing::mock_cluster;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::sync::Arc;

    /// Waits until `cond` holds, failing after a minute.
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_load_stays_at_most_max_ahead_of_its_reader() {
        let mock = mock_cluster(1).unwrap();
        mock.create_topic("payments", 1, 1).unwrap();
        let config = KafkaConfig::new(mock.bootstrap_servers());
        let load = PaymentLoad {
            profile: PaymentProfile::default(),
            topic: "payments".into(),
            start: 0,
            count: 5_000,
            rate: 0,
            malformed_every: 0,
        };
        let progress = Arc::new(LoadProgress::default());
        let read = Counter::default();
        progress.stay_ahead_of(read.clone(), 1_000);
        let writer = {
            let (config, progress) = (config.clone(), progress.clone());
            std::thread::spawn(move || load.run(&config, &progress))
        };
        // It checks every 100 payments: it stops at the first check past 1,000 ahead.
        wait_for("the load to reach its limit", || progress.written() == 1_100);
        // A reader that does not move holds it there (watched for a while: nothing to wait
        // for when nothing is to happen).
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            assert_eq!(
                progress.written(),
                1_100,
                "the load ran ahead of a reader that did not move"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        read.add(1_100);
        wait_for("the load to go on to its next limit", || progress.written() == 2_200);
        read.add(10_000);
        writer.join().unwrap().unwrap();
        assert_eq!(progress.written(), 5_000);
        let consumer: BaseConsumer = config.client_config(&[("group.id", "t")]).create().unwrap();
        let (_, end) = consumer
            .fetch_watermarks("payments", 0, Duration::from_secs(10))
            .unwrap();
        assert_eq!(end, 5_000, "every payment written");
    }
}
