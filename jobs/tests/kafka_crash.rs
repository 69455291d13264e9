//! Kill -9 with Kafka on both ends: `kafka-counts` reads a topic that is still being written,
//! is killed with SIGKILL ten times at random moments and restarted from its checkpoints;
//! in its committed output every input record is counted exactly once, and every malformed
//! record is in the dead-letter topic exactly once, with its origin.
//!
//! The test broker (like every Kafka-protocol broker that runs here) does not hide records
//! of aborted transactions from read-committed consumers, so the check reads the raw log
//! and keeps what a read-committed consumer would see (transactions followed by their
//! COMMIT marker); each input is then counted by its own content: a count by the key and
//! seq of its input, a dead letter by the topic, partition and offset it came from.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{assert_exactly_once, counted_input, dead_letter_origin, send, Deliveries};
use floe_dsl::kafka::testing::TestBroker;
use floe_testkit::crash::{kill_at, KillMoment, TestRng};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::producer::{BaseProducer, Producer};

const KEYS: u64 = 50;
const VALID: u64 = 40_000;
/// One malformed record after every this many valid ones.
const BAD_EVERY: u64 = 100;

fn job(broker: &TestBroker, chk: &Path, bounded: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafka-counts"));
    c.args(["--brokers", &broker.brokers(), "--parallelism", "2"])
        .args(["--checkpoint-interval-ms", "200", "--state-cache-entries", "16"])
        .arg("--checkpoint-dir")
        .arg(chk)
        .env(
            "RUST_LOG",
            std::env::var("FLOE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    if bounded {
        c.arg("--bounded");
    }
    c
}

/// Writes the input while the job runs: event `i` is `{"key": "k<i % KEYS>", "seq": <i / KEYS>}`
/// keyed by its key (so each key's events are in order in one partition), with malformed
/// records in between (bad JSON, wrong types, empty, binary). Returns the malformed payloads
/// by where they landed (partition, offset).
fn produce(brokers: String) -> Vec<((i32, i64), Vec<u8>)> {
    let deliveries = Deliveries::default();
    let config = floe_dsl::kafka::KafkaConfig::new(brokers)
        // One record per batch: the test broker reports wrong end offsets after batches of
        // several records, which the bounded last run relies on.
        .client_config(&[("batch.num.messages", "1")]);
    let producer = BaseProducer::from_config_and_context(&config, deliveries.clone()).unwrap();
    let mut bad = Vec::new();
    let mut n = 0;
    let started = Instant::now();
    for i in 0..VALID {
        let key = format!("k{}", i % KEYS);
        let value = format!("{{\"key\":\"{key}\",\"seq\":{}}}", i / KEYS);
        send(&producer, n, &key, value.as_bytes());
        n += 1;
        if i % BAD_EVERY == BAD_EVERY - 1 {
            let payload: Vec<u8> = match (i / BAD_EVERY) % 4 {
                0 => format!("{{\"key\":\"{key}\",\"seq\":").into_bytes(),
                1 => format!("{{\"key\":7,\"seq\":\"x{i}\"}}").into_bytes(),
                2 => format!("{i}").into_bytes(),
                _ => vec![0xff, 0xfe, (i % 251) as u8, 0],
            };
            send(&producer, n, &key, &payload);
            bad.push((n, payload));
            n += 1;
        }
        // About 10,000 records a second, so that the kills land while data flows.
        if i % 1_000 == 999 {
            let due = Duration::from_millis((i + 1) / 10);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let landed = deliveries.0.lock().unwrap();
    assert_eq!(landed.len(), n, "every record delivered");
    bad.into_iter().map(|(n, payload)| (landed[&n], payload)).collect()
}

#[test]
fn sigkill_kafka_to_kafka_counts_each_input_exactly_once() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("events", 4).unwrap();
    broker.create_topic("counts", 4).unwrap();
    broker.create_topic("events-dlq", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");

    let brokers = broker.brokers();
    let producer = std::thread::spawn(move || produce(brokers));
    // Odd kills at a random moment after the run completed a checkpoint of its own, even
    // ones at a random moment after its start (start-up and restore included).
    let mut rng = TestRng::from_env_or_time();
    for kill in 1..=10 {
        let moment = KillMoment::alternating(kill, &chk, &mut rng, 0..=400, 300..=900);
        let child = job(&broker, &chk, false).spawn().unwrap();
        assert!(kill_at(child, moment), "the unbounded job ended on its own");
    }
    let bad = producer.join().unwrap();
    let status = job(&broker, &chk, true).status().unwrap();
    assert!(status.success(), "the last run failed: {status}");

    // Every input counted exactly once, with the right count: key k's record with seq s
    // has count s + 1.
    let inputs = (0..VALID).map(|i| (format!("k{}", i % KEYS), i / KEYS));
    assert_exactly_once(&broker, "counts", inputs, counted_input);

    // Every malformed record set aside exactly once, with its origin and error.
    let origins = bad.iter().map(|((p, o), _)| ("events".to_string(), *p, *o));
    let dead = assert_exactly_once(&broker, "events-dlq", origins, dead_letter_origin);
    let payloads: HashMap<(i32, i64), &[u8]> = bad.iter().map(|(at, payload)| (*at, payload.as_slice())).collect();
    for d in &dead {
        let (_, p, o) = dead_letter_origin(d).unwrap().remove(0);
        assert_eq!(
            d.value.as_deref().unwrap_or_default(),
            payloads[&(p, o)],
            "the payload from {p}/{o}"
        );
        assert!(d
            .header(floe_dsl::kafka::dead_letter::headers::ERROR)
            .is_some_and(|e| !e.is_empty()));
    }
}
