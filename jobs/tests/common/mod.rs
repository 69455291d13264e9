//! Helpers of the Kafka job tests: writing input, reading a topic back to its end.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use floe_dsl::kafka::testing::TestBroker;
use floe_jobs::payments::PaymentProfile;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Payments of the crash and cluster tests: 300 users, many failures, and attacks (bursts of
/// failures by one user) in blocks of 500, so alerts are frequent and stretch over restarts.
pub fn attack_profile(seed: u64) -> PaymentProfile {
    PaymentProfile {
        users: 300,
        fail_ratio: 0.3,
        gap_ms: 3,
        max_disorder_ms: 2_000,
        attack_share: 0.05,
        attack_block: 500,
        seed,
        ..PaymentProfile::default()
    }
}

/// Fails, showing a few of the differences, unless the committed alerts (each alert's event
/// ids) are exactly the expected ones.
pub fn assert_same_alerts(expected: &BTreeSet<Vec<u64>>, got: &BTreeSet<Vec<u64>>) {
    assert!(
        got == expected,
        "{} alerts expected, {} committed; missing {:?}, unexpected {:?}",
        expected.len(),
        got.len(),
        expected.difference(got).take(3).collect::<Vec<_>>(),
        got.difference(expected).take(3).collect::<Vec<_>>()
    );
}

/// Sends `payload` keyed by `key` to topic `events`, waiting while the queue is full.
pub fn send(producer: &BaseProducer, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to("events").key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// A record read back: its headers, key and payload.
pub type Read = (BTreeMap<String, String>, Vec<u8>, Vec<u8>);

/// The key of the record this test appends to every partition to know where it ends (the
/// test broker's high watermarks are not reliable).
pub const END: &str = "__end_of_test__";

/// Every record of `topic`, as (headers, key, payload), up to an end marker this appends to
/// each partition now.
pub fn read_all(broker: &TestBroker, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = broker
        .config()
        .client_config(&[
            ("group.id", "crash-test-reader"),
            ("enable.auto.commit", "false"),
            // The test broker holds every fetch for the whole wait, even with data to
            // return: with librdkafka's 500 ms, reading many small batches takes minutes.
            ("fetch.wait.max.ms", "10"),
            // What a read-committed consumer sees is checked by the stamps, not by the
            // broker (which does not hide aborted records anyway); waiting for the broker's
            // last stable offset past a killed run's open transaction could stall the read.
            ("isolation.level", "read_uncommitted"),
        ])
        .create()
        .unwrap();
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let producer: BaseProducer = broker.config().client_config(&[]).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut open = BTreeSet::new();
    // This read's own marker: a topic read several times holds the markers of earlier
    // reads, which must not end this one.
    static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let marker = format!(
        "{END}{}-{}",
        std::process::id(),
        READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    for p in meta.topics()[0].partitions() {
        producer
            .send(BaseRecord::to(topic).partition(p.id()).key(END).payload(&marker))
            .unwrap();
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
        open.insert(p.id());
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "could not read {topic} to its end");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        if m.key() == Some(END.as_bytes()) {
            if m.payload() == Some(marker.as_bytes()) {
                open.remove(&m.partition());
            }
            continue;
        }
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for h in h.iter() {
                let v = h
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(h.key.to_string(), v);
            }
        }
        out.push((
            headers,
            m.key().unwrap_or_default().to_vec(),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

/// The records of `topic` counted once per exactly-once stamp.
pub fn committed(broker: &TestBroker, topic: &str) -> Vec<(BTreeMap<String, String>, Vec<u8>)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (h, _key, payload) in read_all(broker, topic) {
        let stamp: Vec<String> = ["floe.subtask", "floe.attempt", "floe.epoch", "floe.seq"]
            .iter()
            .map(|k| {
                h.get(*k)
                    .cloned()
                    .unwrap_or_else(|| panic!("{topic}: a record without {k}: {h:?}"))
            })
            .collect();
        if seen.insert(stamp) {
            out.push((h, payload));
        }
    }
    out
}

/// Lets `child` run for `after`, then kills it with SIGKILL; false if it ended before.
pub fn kill_at_random(mut child: Child, after: Duration) -> bool {
    let started = Instant::now();
    // The random moment of the kill: time is the point here, not a synchronization.
    while started.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}
