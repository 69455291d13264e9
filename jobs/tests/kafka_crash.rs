//! Kill -9 with Kafka on both ends: `kafka-counts` reads a topic that is still being written,
//! is killed with SIGKILL ten times at random moments and restarted from its checkpoints;
//! in its committed output every input record is counted exactly once, and every malformed
//! record is in the dead-letter topic exactly once, with its origin.
//!
//! The test broker (like every Kafka-protocol broker that runs here) does not hide records
//! of aborted transactions from read-committed consumers, so the check does what such a
//! consumer would: the sink stamps each record with its subtask, attempt, checkpoint epoch
//! and position in the epoch, and a record is counted once per stamp.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{committed, kill_at_random, send};
use floe_dsl::kafka::testing::TestBroker;
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if bounded {
        c.arg("--bounded");
    }
    c
}

/// Writes the input while the job runs: event `i` is `{"key": "k<i % KEYS>", "seq": <i / KEYS>}`
/// keyed by its key (so each key's events are in order in one partition), with malformed
/// records in between (bad JSON, wrong types, empty, binary). Returns the malformed payloads.
fn produce(brokers: String) -> Vec<Vec<u8>> {
    let producer: BaseProducer = floe_dsl::kafka::KafkaConfig::new(brokers)
        // One record per batch: the test broker reports wrong end offsets after batches of
        // several records, which the bounded last run relies on.
        .client_config(&[("batch.num.messages", "1")])
        .create()
        .unwrap();
    let mut bad = Vec::new();
    let started = Instant::now();
    for i in 0..VALID {
        let key = format!("k{}", i % KEYS);
        let value = format!("{{\"key\":\"{key}\",\"seq\":{}}}", i / KEYS);
        send(&producer, &key, value.as_bytes());
        if i % BAD_EVERY == BAD_EVERY - 1 {
            let payload: Vec<u8> = match (i / BAD_EVERY) % 4 {
                0 => format!("{{\"key\":\"{key}\",\"seq\":").into_bytes(),
                1 => format!("{{\"key\":7,\"seq\":\"x{i}\"}}").into_bytes(),
                2 => format!("{i}").into_bytes(),
                _ => vec![0xff, 0xfe, (i % 251) as u8, 0],
            };
            send(&producer, &key, &payload);
            bad.push(payload);
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
    bad
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
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut kills = 0;
    while kills < 10 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(300 + (seed >> 33) % 600);
        let child = job(&broker, &chk, false).spawn().unwrap();
        assert!(kill_at_random(child, after), "the unbounded job ended on its own");
        kills += 1;
    }
    let bad = producer.join().unwrap();
    let status = job(&broker, &chk, true).status().unwrap();
    assert!(status.success(), "the last run failed: {status}");

    // Every input counted exactly once: key k's record with seq s has count s + 1.
    let mut counted: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for (_, payload) in committed(&broker, "counts") {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let (key, seq, count) = (
            v["key"].as_str().unwrap().to_string(),
            v["seq"].as_u64().unwrap(),
            v["count"].as_u64().unwrap(),
        );
        assert!(
            counted.entry(key.clone()).or_default().insert((seq, count)),
            "{key} seq {seq} counted twice"
        );
    }
    assert_eq!(counted.len() as u64, KEYS);
    for (key, seen) in &counted {
        let expected: BTreeSet<(u64, u64)> = (0..VALID / KEYS).map(|s| (s, s + 1)).collect();
        assert!(
            *seen == expected,
            "{key}: {} of {} counts, or a wrong count",
            seen.len(),
            expected.len()
        );
    }

    // Every malformed record set aside once, with its origin.
    let dead = committed(&broker, "events-dlq");
    assert_eq!(dead.len(), bad.len(), "each malformed record in the DLQ once");
    let mut origins = HashSet::new();
    for (h, payload) in &dead {
        assert_eq!(h.get("floe.source.topic").map(String::as_str), Some("events"));
        assert!(h.get("floe.error").is_some_and(|e| !e.is_empty()));
        assert!(origins.insert((h["floe.source.partition"].clone(), h["floe.source.offset"].clone())));
        assert!(bad.contains(payload), "an unexpected dead letter: {payload:?}");
    }
}
