//! 10,000 malformed records mixed into valid ones, through the whole `kafka-counts` job on a
//! real broker: bad JSON, wrong types, empty values, tombstones, binary, 1 MB values, and
//! events the job's own check rejects (an empty key). Every one of them is in the
//! dead-letter topic once, with its bytes, key and origin (topic, partition, offset,
//! timestamp) in headers; the valid output is what it would be without them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::read_all;
use floe_dsl::kafka::testing::TestBroker;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

const KEYS: u64 = 20;
const VALID: u64 = 20_000;
const MALFORMED: usize = 10_000;
const PARTITIONS: i32 = 3;
/// Event time of the first record (ms); record `n` is at `BASE_TS + n`.
const BASE_TS: i64 = 1_767_225_600_000;

/// Where each sent record landed: (partition, offset) by the index given at send time.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<HashMap<usize, (i32, i64)>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<usize>) {
        let m = result.as_ref().expect("the test broker accepted the record");
        self.0.lock().unwrap().insert(*id, (m.partition(), m.offset()));
    }
}

/// The `i`-th malformed payload (`None`: a tombstone).
fn malformed(i: usize) -> Option<Vec<u8>> {
    Some(match i % 8 {
        0 => format!("{{\"key\":\"k{i}\",\"seq\":").into_bytes(), // truncated JSON
        1 => format!("{{\"key\":{i},\"seq\":\"x\"}}").into_bytes(), // wrong types
        2 => Vec::new(),                                          // empty
        3 => return None,                                         // tombstone
        4 => vec![0xff, 0xfe, (i % 251) as u8, 0, 0x80],          // binary
        5 if i % 2_000 == 5 => {
            // 1 MB, valid UTF-8 but not JSON
            let mut v = vec![b'x'; 1 << 20];
            v[..8].copy_from_slice(format!("{:08}", i % 100_000_000).as_bytes());
            v
        }
        6 => format!("{{\"key\":\"\",\"seq\":{i}}}").into_bytes(), // rejected by the job: empty key
        _ => format!("{{\"key\":\"k{i}\"}}").into_bytes(),         // a field missing
    })
}

/// A sent malformed record: its key, payload and timestamp.
type Sent = (Vec<u8>, Option<Vec<u8>>, i64);

/// Sends the input: valid event `j` is `{"key": "k<j % KEYS>", "seq": <j / KEYS>}`, keyed by
/// its key; malformed records are interleaved (one after every second valid one). Returns
/// the malformed records by where they landed.
fn produce(broker: &TestBroker) -> HashMap<(i32, i64), Sent> {
    let deliveries = Deliveries::default();
    // One record per batch: the test broker reports wrong end offsets after batches of
    // several records, which the bounded job relies on.
    let config = broker.config().client_config(&[
        ("batch.num.messages", "1"),
        ("message.max.bytes", "2000000"),
        ("queue.buffering.max.messages", "1000000"),
    ]);
    let producer = BaseProducer::from_config_and_context(&config, deliveries.clone()).unwrap();
    let mut sent = HashMap::new();
    let (mut valid, mut bad) = (0u64, 0usize);
    for n in 0usize.. {
        if valid == VALID && bad == MALFORMED {
            break;
        }
        let ts = BASE_TS + n as i64;
        let (key, payload) = if bad < MALFORMED && (n % 3 == 2 || valid == VALID) {
            let p = malformed(bad);
            sent.insert(n, (format!("bad{bad}").into_bytes(), p.clone(), ts));
            bad += 1;
            (format!("bad{}", bad - 1), p)
        } else {
            let key = format!("k{}", valid % KEYS);
            let p = format!("{{\"key\":\"{key}\",\"seq\":{}}}", valid / KEYS).into_bytes();
            valid += 1;
            (key, Some(p))
        };
        let mut record = BaseRecord::with_opaque_to("events", Box::new(n))
            .key(&key)
            .timestamp(ts);
        if let Some(p) = payload.as_deref() {
            record = record.payload(p);
        }
        while let Err((e, r)) = producer.send(record) {
            assert!(
                matches!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                ),
                "{e}"
            );
            record = r;
            producer.poll(Duration::from_millis(10));
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let landed = deliveries.0.lock().unwrap();
    assert_eq!(landed.len(), VALID as usize + MALFORMED, "every record delivered");
    sent.into_iter().map(|(n, s)| (landed[&n], s)).collect()
}

#[test]
fn ten_thousand_malformed_records_all_reach_the_dead_letter_topic_with_their_origin() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("events", PARTITIONS).unwrap();
    broker.create_topic("counts", PARTITIONS).unwrap();
    broker.create_topic("events-dlq", 1).unwrap();
    let sent = produce(&broker);
    assert_eq!(sent.len(), MALFORMED);

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-counts"))
        .args(["--brokers", &broker.brokers(), "--parallelism", "2", "--bounded"])
        .args(["--delivery", "at-least-once", "--checkpoint-interval-ms", "500"])
        .args(["-X", "message.max.bytes=2000000"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("chk"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("dead letters {MALFORMED}")),
        "the job's dead-letter metric: {stdout}"
    );

    // Every malformed record once, with its bytes, key and origin.
    let dead = read_all(&broker, "events-dlq");
    assert_eq!(dead.len(), MALFORMED, "each malformed record in the DLQ exactly once");
    let mut found = HashMap::new();
    for (h, key, payload) in dead {
        assert_eq!(h.get("floe.source.topic").map(String::as_str), Some("events"));
        let at: (i32, i64) = (
            h["floe.source.partition"].parse().unwrap(),
            h["floe.source.offset"].parse().unwrap(),
        );
        let (sent_key, sent_payload, ts) = sent
            .get(&at)
            .unwrap_or_else(|| panic!("a dead letter from {at:?}, where no malformed record was written"));
        assert_eq!(&key, sent_key, "key of the record at {at:?}");
        assert_eq!(payload, sent_payload.clone().unwrap_or_default(), "payload at {at:?}");
        assert_eq!(h.get("floe.source.timestamp"), Some(&ts.to_string()));
        let error = &h["floe.error"];
        let rejected = sent_payload
            .as_deref()
            .is_some_and(|p| p.starts_with(b"{\"key\":\"\","));
        assert_eq!(error.starts_with("rejected: "), rejected, "{at:?}: {error}");
        assert!(found.insert(at, error.clone()).is_none(), "{at:?} twice");
    }
    assert_eq!(found.len(), MALFORMED);
    let by_reason = |needle: &str| found.values().filter(|e| e.contains(needle)).count();
    assert_eq!(by_reason("tombstone"), MALFORMED / 8);
    assert_eq!(by_reason("empty value"), MALFORMED / 8);
    assert_eq!(by_reason("the key is empty"), MALFORMED / 8);

    // The valid output is unaffected: each key counted 1..=n in order.
    let mut counts: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (_, _, payload) in read_all(&broker, "counts") {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        counts
            .entry(v["key"].as_str().unwrap().to_string())
            .or_default()
            .push((v["seq"].as_u64().unwrap(), v["count"].as_u64().unwrap()));
    }
    assert_eq!(counts.len() as u64, KEYS);
    for (key, seen) in counts {
        let expected: Vec<(u64, u64)> = (0..VALID / KEYS).map(|s| (s, s + 1)).collect();
        assert!(
            seen == expected,
            "{key}: {} counts, not 1..={} in order",
            seen.len(),
            VALID / KEYS
        );
    }
}
