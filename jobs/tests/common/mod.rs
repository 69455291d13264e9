//! Helpers of the Kafka job tests: writing input, and checking output exactly once with the
//! verifier of `floe_operators::kafka::testing` (the raw committed log and a ledger of
//! inputs by their own ids; never the sink's `floe.*` stamps).
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_dsl::kafka::dead_letter::headers as dl;
use floe_dsl::kafka::testing::{check_exactly_once, describe, CommittedRecord, TestBroker};
use floe_jobs::payments::PaymentProfile;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

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

/// Sends `payload` keyed by `key` to topic `events` as record number `n`, waiting while the
/// queue is full.
pub fn send<C: ProducerContext<DeliveryOpaque = Box<usize>>>(
    producer: &rdkafka::producer::BaseProducer<C>,
    n: usize,
    key: &str,
    payload: &[u8],
) {
    let mut record = BaseRecord::with_opaque_to("events", Box::new(n))
        .key(key)
        .payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, r)) => {
                assert_eq!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull), "{e}");
                record = r;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Where each record sent by a producer with this context landed, by the number given to it
/// at send time (its delivery opaque).
#[derive(Clone, Default)]
pub struct Deliveries(pub Arc<Mutex<HashMap<usize, (i32, i64)>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Box<usize>) {
        let m = result.as_ref().expect("the test broker accepted the record");
        self.0.lock().unwrap().insert(*id, (m.partition(), m.offset()));
    }
}

/// Fails, naming every input missing or doubled, unless the committed records of `topic`
/// (what a `read_committed` consumer sees, decided from the raw log) explain each of
/// `expected` exactly once and nothing else; `explain` names the inputs a record stands for
/// (an error: it is unreadable). Returns the committed records.
pub fn assert_exactly_once<I: Ord + Clone + Debug>(
    broker: &TestBroker,
    topic: &str,
    expected: impl IntoIterator<Item = I>,
    explain: impl FnMut(&CommittedRecord) -> Result<Vec<I>, String>,
) -> Vec<CommittedRecord> {
    let read = broker.read_committed(topic).unwrap();
    println!("{topic}: {}", describe(&read));
    if let Err(v) = check_exactly_once(topic, expected, &read.records, explain) {
        // The sink's own bookkeeping of a few doubled inputs' copies, to tell how they came.
        let mut copies = String::new();
        for m in v.doubled.iter().take(3) {
            for at in &m.found {
                let r = read.records.iter().find(|r| r.position() == *at);
                let stamp: Vec<String> = r
                    .map(|r| {
                        r.headers
                            .iter()
                            .filter(|(n, _)| n.starts_with("floe."))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v.as_deref().unwrap_or_default())))
                    .collect();
                copies.push_str(&format!("\n  {:?} at {at}: {}", m.input, stamp.join(" ")));
            }
        }
        panic!("{v}\n(read: {}){copies}", describe(&read));
    }
    read.records
}

/// The input a dead letter stands for: its origin (topic, partition, offset), from its
/// headers.
pub fn dead_letter_origin(r: &CommittedRecord) -> Result<Vec<(String, i32, i64)>, String> {
    let header = |name: &str| {
        r.header_str(name)
            .ok_or_else(|| format!("a dead letter without the header {name}"))
    };
    let topic = header(dl::TOPIC)?;
    let partition = header(dl::PARTITION)?;
    let offset = header(dl::OFFSET)?;
    match (partition.parse(), offset.parse()) {
        (Ok(p), Ok(o)) => Ok(vec![(topic, p, o)]),
        _ => Err(format!("a dead letter from partition {partition:?} offset {offset:?}")),
    }
}

/// The input a `kafka-counts` output stands for, `(key, seq)` of the event it counted, if its
/// count is right (key k's event with seq s is its (s + 1)-th).
pub fn counted_input(r: &CommittedRecord) -> Result<Vec<(String, u64)>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(r.value.as_deref().unwrap_or_default()).map_err(|e| format!("not JSON: {e}"))?;
    match (v["key"].as_str(), v["seq"].as_u64(), v["count"].as_u64()) {
        (Some(key), Some(seq), Some(count)) if count == seq + 1 => Ok(vec![(key.to_string(), seq)]),
        _ => Err(format!("not a right count: {v}")),
    }
}

/// The inputs a fraud alert stands for: the event ids of its payments, as one id (an alert
/// is explained by its set of payments).
pub fn alert_payments(r: &CommittedRecord) -> Result<Vec<Vec<u64>>, String> {
    let alert: floe_jobs::fraud::Alert =
        serde_json::from_slice(r.value.as_deref().unwrap_or_default()).map_err(|e| format!("not an alert: {e}"))?;
    Ok(vec![alert.event_ids])
}

/// The origins of the malformed payments in `topic` (the load generator's
/// `{"user_id":"..","status":"MAYBE"}`): the inputs the dead-letter topic must explain.
pub fn malformed_payments(broker: &TestBroker, topic: &str) -> Vec<(String, i32, i64)> {
    let read = broker.read_committed(topic).unwrap();
    read.records
        .iter()
        .filter(|r| r.value_str().contains("\"status\":\"MAYBE\""))
        .map(|r| (topic.to_string(), r.partition, r.offset))
        .collect()
}

/// Producer properties of the tests' input writers: one record per batch (the test broker
/// reports wrong end offsets after batches of several records, which the bounded last run
/// relies on), and a short queue, so that a writer asked for more than the broker takes
/// slows down to it instead of piling up a backlog no final flush can deliver in time.
pub fn load_producer() -> [(&'static str, &'static str); 2] {
    [("batch.num.messages", "1"), ("queue.buffering.max.messages", "2000")]
}

/// The client configuration of a payment writer (see [`load_producer`]).
pub fn payments_writer(broker: &TestBroker) -> floe_dsl::kafka::KafkaConfig {
    load_producer()
        .iter()
        .fold(broker.config(), |config, (k, v)| config.set(*k, *v))
}

/// A broker with the fraud job's topics: `payments` (4 partitions), `fraud-alerts` (4) and
/// `payments-dlq` (1).
pub fn fraud_broker() -> TestBroker {
    let broker = TestBroker::start().unwrap();
    for (topic, partitions) in [("payments", 4), ("fraud-alerts", 4), ("payments-dlq", 1)] {
        broker.create_topic(topic, partitions).unwrap();
    }
    broker
}

/// Writes the first `count` payments of `profile` to `broker`'s topic `payments` at about
/// `rate` a second, with a malformed record after every `malformed_every`, on a thread of its
/// own (through [`payments_writer`]); join it for the outcome.
pub fn write_payments(
    broker: &TestBroker,
    profile: &PaymentProfile,
    count: u64,
    rate: u64,
    malformed_every: u64,
) -> std::thread::JoinHandle<Result<(), String>> {
    let load = floe_jobs::generator::PaymentLoad {
        profile: profile.clone(),
        topic: "payments".into(),
        start: 0,
        count,
        rate,
        malformed_every,
    };
    let config = payments_writer(broker);
    std::thread::spawn(move || {
        load.run(&config, &floe_jobs::generator::LoadProgress::default())
            .map_err(|e| e.to_string())
    })
}
