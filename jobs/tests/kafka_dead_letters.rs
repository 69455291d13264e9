//! 10,000 malformed records mixed into valid ones, through the whole `kafka-counts` job on a
//! real broker: bad JSON, wrong types, empty values, tombstones, binary, 1 MB values, and
//! events the job's own check rejects (an empty key). Every one of them is in the
//! dead-letter topic once, with its bytes, key and origin (topic, partition, offset,
//! timestamp) in headers; the valid output is what it would be without them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{assert_exactly_once, counted_input, dead_letter_origin, Deliveries};
use floe_dsl::kafka::testing::TestBroker;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const KEYS: u64 = 20;
const VALID: u64 = 20_000;
const MALFORMED: usize = 10_000;
const PARTITIONS: i32 = 3;
/// Event time of the first record (ms); record `n` is at `BASE_TS + n`.
const BASE_TS: i64 = 1_767_225_600_000;

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

    // Every malformed record once (by its origin), with its bytes, key and error.
    let origins = sent.keys().map(|(p, o)| ("events".to_string(), *p, *o));
    let dead = assert_exactly_once(&broker, "events-dlq", origins, dead_letter_origin);
    let mut found = HashMap::new();
    for d in dead {
        let (_, partition, offset) = dead_letter_origin(&d).unwrap().remove(0);
        let at = (partition, offset);
        let (sent_key, sent_payload, ts) = &sent[&at];
        assert_eq!(
            d.key.as_deref().unwrap_or_default(),
            &sent_key[..],
            "key of the record at {at:?}"
        );
        assert_eq!(
            d.value.clone().unwrap_or_default(),
            sent_payload.clone().unwrap_or_default(),
            "payload at {at:?}"
        );
        assert_eq!(d.header_str("floe.source.timestamp"), Some(ts.to_string()));
        let error = d.header_str("floe.error").unwrap_or_default();
        let rejected = sent_payload
            .as_deref()
            .is_some_and(|p| p.starts_with(b"{\"key\":\"\","));
        assert_eq!(error.starts_with("rejected: "), rejected, "{at:?}: {error}");
        found.insert(at, error);
    }
    assert_eq!(found.len(), MALFORMED);
    let by_reason = |needle: &str| found.values().filter(|e| e.contains(needle)).count();
    assert_eq!(by_reason("tombstone"), MALFORMED / 8);
    assert_eq!(by_reason("empty value"), MALFORMED / 8);
    assert_eq!(by_reason("the key is empty"), MALFORMED / 8);

    // The valid output is unaffected: each key counted 1..=n, once each and in order.
    let inputs = (0..VALID).map(|j| (format!("k{}", j % KEYS), j / KEYS));
    let counted = assert_exactly_once(&broker, "counts", inputs, counted_input);
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &counted {
        let (key, seq) = counted_input(r).unwrap().remove(0);
        order.entry(key).or_default().push(seq);
    }
    for (key, seqs) in order {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key}: counts out of order");
    }
}
