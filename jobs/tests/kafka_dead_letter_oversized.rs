//! A malformed record larger than the dead-letter topic takes (5 MB, against librdkafka's
//! default `message.max.bytes` of 1,000,000 in the job's producer), through the whole
//! `kafka-counts` job on a real broker: the job goes on and finishes, the dead-letter topic
//! holds the record cut to fit with its original size in a header, and the cut is counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use floe_dsl::kafka::dead_letter::headers;
use floe_dsl::kafka::testing::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const BIG: usize = 5 << 20;

/// A record read back: headers, key and value.
type Read = (BTreeMap<String, String>, Option<Vec<u8>>, Vec<u8>);

/// The first `n` records of partition 0 of `topic` (waiting for them, with a deadline).
fn read(broker: &TestBroker, topic: &str, n: usize) -> Vec<Read> {
    let consumer: BaseConsumer = broker
        .config()
        .client_config(&[("group.id", "oversized-test"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} records of {topic} read",
            got.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let h = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                        (h.key.to_string(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.push((h, m.key().map(<[u8]>::to_vec), m.payload().unwrap_or_default().to_vec()));
    }
    got
}

#[test]
fn a_dead_letter_larger_than_the_topic_takes_is_cut_marked_and_counted_and_the_job_goes_on() {
    let broker = TestBroker::start().unwrap();
    for topic in ["events", "counts", "events-dlq"] {
        broker.create_topic(topic, 1).unwrap();
    }
    let big: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let producer: BaseProducer = broker
        .config()
        .client_config(&[("message.max.bytes", "8000000"), ("batch.num.messages", "1")])
        .create()
        .unwrap();
    let records: [(&str, &[u8]); 3] = [
        ("k", br#"{"key":"k","seq":0}"#),
        ("huge", &big),
        ("k", br#"{"key":"k","seq":1}"#),
    ];
    for (key, value) in records {
        producer
            .send(BaseRecord::to("events").partition(0).key(key).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-counts"))
        .args(["--brokers", &broker.brokers(), "--parallelism", "1", "--bounded"])
        .args(["--delivery", "at-least-once", "--checkpoint-interval-ms", "500"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("chk"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "the job goes on: {stderr}\n{stdout}");
    assert!(
        stdout.contains("dead letters 1;") && stdout.contains("dead letters cut to fit 1;"),
        "the summary counts the dead letter and its cut: {stdout}"
    );
    assert!(
        stderr.contains("dead letter too large for its topic"),
        "a warning says so: {stderr}"
    );

    let dead = read(&broker, "events-dlq", 1);
    let (h, key, value) = &dead[0];
    assert_eq!(h.get(headers::TRUNCATED).map(String::as_str), Some("5242880"));
    assert_eq!(h.get(headers::OFFSET).map(String::as_str), Some("1"));
    assert!(h.get(headers::ERROR).is_some_and(|e| e.contains("JSON")), "{h:?}");
    assert_eq!(key.as_deref(), Some(&b"huge"[..]), "the key is kept whole");
    assert!(
        value.len() < 1_000_000 && value.len() > 900_000,
        "cut to fit: {} bytes",
        value.len()
    );
    assert!(big.starts_with(value), "the value is the record's first bytes");

    let counts = read(&broker, "counts", 2);
    let seqs: Vec<serde_json::Value> = counts
        .iter()
        .map(|(_, _, v)| serde_json::from_slice(v).unwrap())
        .collect();
    assert_eq!(seqs[1]["count"], 2, "both valid records counted: {seqs:?}");
}
