//! The Kafka sink against a real Kafka-protocol broker (tansu on loopback): at-least-once
//! and exactly-once delivery, recovery of pending transactions after a crash and on
//! rescale, dead letters, and errors that are never silent.
//!
//! tansu does not hide aborted transactions from `read_committed` consumers, so these tests
//! check exactly-once the way the sink's docs say: through the `floe.*` headers, counting
//! each `(subtask, epoch, seq)` of a completed checkpoint once, and asserting that each
//! appears exactly once in the topic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_checkpoints::{KeyGroupRange, StateSnapshot};
use floe_operators::kafka::dead_letter::{headers as dl, DeadLetter};
use floe_operators::kafka::sink::{eos_headers, Delivery, EosStamp, Json, KafkaSink, Utf8};
use floe_operators::kafka::testing::{mock_cluster, TestBroker};
use floe_operators::kafka::KafkaConfig;
use floe_runtime::harness::OperatorHarness;
use floe_runtime::{Record, RuntimeError, TaskInfo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// A record read back.
#[derive(Clone, Debug)]
struct Got {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    fn value_str(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// The header of the end markers that [`read_to_end`] writes.
const END: &str = "test.end";

/// Every record of `topic` written so far, in partition and offset order (end markers left
/// out). To know where the end is without waiting, it first appends an end marker with a
/// fresh id to every partition, then reads until it has seen all of them: everything before
/// a marker in its partition has been read. (tansu's high watermarks cannot say where the end
/// is: it reported 1 for a partition holding 43 records written in one batch.)
fn read_to_end(config: &KafkaConfig, topic: &str) -> Vec<Got> {
    static READS: AtomicU64 = AtomicU64::new(0);
    let id = format!("{}-{}", std::process::id(), READS.fetch_add(1, Ordering::Relaxed));
    let timeout = Duration::from_secs(10);
    let producer: BaseProducer = config.client_config(&[]).create().unwrap();
    let meta = producer.client().fetch_metadata(Some(topic), timeout).unwrap();
    let partitions = meta.topics()[0].partitions().len() as i32;
    for p in 0..partitions {
        let end = OwnedHeaders::new().insert(Header {
            key: END,
            value: Some(&id),
        });
        producer
            .send(BaseRecord::<(), (), ()>::to(topic).partition(p).headers(end))
            .unwrap();
    }
    producer.flush(timeout).unwrap();

    let consumer: BaseConsumer = config
        .client_config(&[
            ("group.id", "floe-test-reader"),
            ("enable.auto.commit", "false"),
            // See everything in the log, as a broker without transaction markers shows it.
            ("isolation.level", "read_uncommitted"),
        ])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_range(topic, 0, partitions - 1);
    tpl.set_all_offsets(Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut waiting: BTreeSet<i32> = (0..partitions).collect();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "end markers of `{topic}` not read: partitions {waiting:?}"
        );
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let g = Got {
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        match g.header(END) {
            Some(end) if end == id.as_bytes() => {
                waiting.remove(&g.partition);
            }
            Some(_) => {}
            None => got.push(g),
        }
    }
    got
}

/// The exactly-once stamps of `records`, each with its value; fails on a record without one.
fn stamps(records: &[Got]) -> Vec<(EosStamp, String)> {
    records
        .iter()
        .map(|g| {
            let mut h = OwnedHeaders::new();
            for (k, v) in &g.headers {
                h = h.insert(Header { key: k, value: Some(v) });
            }
            (EosStamp::from_headers(&h).expect("a floe.* stamp"), g.value_str())
        })
        .collect()
}

/// Asserts that each `(subtask, epoch, seq)` appears exactly once; returns the values.
fn exactly_once(records: &[Got]) -> BTreeSet<String> {
    let mut seen = BTreeMap::new();
    for (s, v) in stamps(records) {
        let id = (s.subtask, s.epoch, s.seq);
        assert!(seen.insert(id, v.clone()).is_none(), "{id:?} written twice ({v})");
    }
    let values: BTreeSet<String> = seen.into_values().collect();
    assert_eq!(values.len(), records.len(), "each value once");
    values
}

fn info(subtask: usize, parallelism: usize, attempt: u64) -> TaskInfo {
    let mut i = TaskInfo::new("sink-test", "kafka", subtask, parallelism, 128);
    i.checkpointing = true;
    i.attempt = attempt;
    i
}

fn strings(range: std::ops::Range<u32>, prefix: &str) -> Vec<Record<String>> {
    range
        .map(|i| Record::new(format!("{prefix}{i}"), 1_000 + i64::from(i)))
        .collect()
}

fn eos_sink(config: KafkaConfig, topic: &str, prefix: &str) -> KafkaSink<String> {
    KafkaSink::builder(config, topic)
        .serializer(Utf8)
        .key(|s: &String| Some(s.as_bytes().to_vec()))
        .delivery(Delivery::ExactlyOnce)
        .transactional_id_prefix(prefix)
        .build()
        .unwrap()
}

fn open(sink: &KafkaSink<String>, info: TaskInfo, snapshot: Option<StateSnapshot>) -> OperatorHarness {
    OperatorHarness::restored(Box::new(sink.clone()), info, 0, snapshot).unwrap()
}

#[test]
fn at_least_once_writes_every_record_with_its_key_partition_headers_and_timestamp() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("alo", 3).unwrap();
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Event {
        user: u32,
        seq: u32,
    }
    let sink = KafkaSink::builder(broker.config(), "alo")
        .serializer(Json)
        .key(|e: &Event| Some(format!("user-{}", e.user).into_bytes()))
        .headers(|e: &Event| vec![("seq".to_string(), e.seq.to_string().into_bytes())])
        .build()
        .unwrap();
    let metrics = sink.metrics();
    let mut h = OperatorHarness::new(Box::new(sink), info(0, 1, 1), 0).unwrap();
    for batch in 0..3u32 {
        let records = (batch * 100..(batch + 1) * 100)
            .map(|seq| Record::new(Event { user: seq % 7, seq }, 5_000 + i64::from(seq)))
            .collect();
        h.process(records).unwrap();
    }
    let snap = h.snapshot(1).unwrap();
    assert!(snap.is_empty(), "at-least-once keeps no state");
    assert_eq!(
        metrics.records_written(),
        300,
        "the barrier waited for every acknowledgement"
    );
    assert_eq!(metrics.records_failed(), 0);

    let got = read_to_end(&broker.config(), "alo");
    assert_eq!(got.len(), 300);
    let mut partition_of_key = BTreeMap::new();
    let mut last_seq_of_key: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for g in &got {
        let key = g.key.clone().unwrap();
        let seq: i64 = String::from_utf8_lossy(g.header("seq").unwrap()).parse().unwrap();
        assert_eq!(g.value_str(), format!(r#"{{"user":{},"seq":{seq}}}"#, seq % 7));
        assert_eq!(key, format!("user-{}", seq % 7).into_bytes());
        assert_eq!(g.timestamp, Some(5_000 + seq), "the event timestamp");
        assert_eq!(*partition_of_key.entry(key.clone()).or_insert(g.partition), g.partition);
        let last = last_seq_of_key.insert(key, seq);
        assert!(last.is_none_or(|l| l < seq), "order per key");
    }
    let used: BTreeSet<_> = partition_of_key.values().collect();
    assert!(used.len() > 1, "7 keys spread over partitions: {partition_of_key:?}");
}

#[test]
fn a_partitioner_chooses_partitions_and_fire_and_forget_writes_by_the_end() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("parts", 4).unwrap();
    let sink = KafkaSink::builder(broker.config(), "parts")
        .serializer(|n: &u32| n.to_string().into_bytes())
        .partitioner(|n: &u32, partitions| (*n % partitions as u32) as i32)
        .delivery(Delivery::None)
        .build()
        .unwrap();
    let mut h = OperatorHarness::new(Box::new(sink.clone()), info(0, 1, 1), 0).unwrap();
    h.process((0..40u32).map(Record::untimed).collect()).unwrap();
    h.finish().unwrap();
    let got = read_to_end(&broker.config(), "parts");
    assert_eq!(got.len(), 40);
    for g in &got {
        let n: i32 = g.value_str().parse().unwrap();
        assert_eq!(g.partition, n % 4);
        assert_eq!(g.key, None);
    }

    let bad = KafkaSink::builder(broker.config(), "parts")
        .serializer(Utf8)
        .partitioner(|_: &u32, partitions| partitions)
        .build()
        .unwrap();
    let mut h = OperatorHarness::new(Box::new(bad), info(0, 1, 1), 0).unwrap();
    let err = h.process(vec![Record::untimed(1u32)]).unwrap_err();
    assert!(err.to_string().contains("chose partition 4 of 4"), "{err}");
}

#[test]
fn exactly_once_records_appear_only_when_their_checkpoint_completes() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("eos", 2).unwrap();
    let sink = eos_sink(broker.config(), "eos", "eos-visible");
    let metrics = sink.metrics();
    let mut h = open(&sink, info(0, 1, 0xa1), None);
    h.process(strings(0..50, "a")).unwrap();
    h.snapshot(1).unwrap();
    h.process(strings(50..60, "a")).unwrap();
    assert!(
        read_to_end(&broker.config(), "eos").is_empty(),
        "nothing before completion"
    );

    h.notify_checkpoint_complete(1).unwrap();
    let got = read_to_end(&broker.config(), "eos");
    assert_eq!(got.len(), 50);
    for (stamp, value) in stamps(&got) {
        assert_eq!(stamp.transactional_id, "eos-visible-0");
        assert_eq!((stamp.subtask, stamp.attempt, stamp.epoch), (0, 0xa1, 1));
        assert_eq!(value, format!("a{}", stamp.seq), "seq is the index within the epoch");
    }
    let g = &got[0];
    assert_eq!(g.key.as_deref(), g.value.as_deref());
    assert!(g.header(eos_headers::TXN).is_some());

    // A second epoch; a third one stays pending until its own checkpoint.
    h.snapshot(2).unwrap();
    h.process(strings(60..65, "a")).unwrap();
    h.snapshot(3).unwrap();
    h.notify_checkpoint_complete(2).unwrap();
    let got = read_to_end(&broker.config(), "eos");
    assert_eq!(got.len(), 60);
    assert_eq!(
        exactly_once(&got),
        strings(0..60, "a").into_iter().map(|r| r.value).collect()
    );
    h.notify_checkpoint_complete(3).unwrap();
    assert_eq!(read_to_end(&broker.config(), "eos").len(), 65);
    assert_eq!(metrics.transactions_committed(), 3);
    assert_eq!(metrics.records_written(), 65);
}

#[test]
fn exactly_once_commits_a_completed_checkpoint_that_a_crash_left_uncommitted() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("crash", 2).unwrap();
    let sink = eos_sink(broker.config(), "crash", "eos-crash");
    let mut h = open(&sink, info(0, 1, 0xb1), None);
    h.process(strings(0..40, "c")).unwrap();
    let snap = h.snapshot(1).unwrap();
    // Checkpoint 1 completed, but the process died before the notification.
    drop(h);
    assert!(read_to_end(&broker.config(), "crash").is_empty());

    let restored = eos_sink(broker.config(), "crash", "eos-crash");
    let metrics = restored.metrics();
    let h = open(&restored, info(0, 1, 0xb2), Some(snap.clone()));
    assert_eq!(metrics.epochs_recovered(), 1, "committed while opening");
    let got = read_to_end(&broker.config(), "crash");
    assert_eq!(got.len(), 40);
    assert_eq!(exactly_once(&got).len(), 40);
    assert!(stamps(&got).iter().all(|(s, _)| s.attempt == 0xb1 && s.epoch == 1));
    drop(h);

    // The restored attempt crashed too: restoring the same checkpoint again adds nothing.
    let again = eos_sink(broker.config(), "crash", "eos-crash");
    let metrics = again.metrics();
    let _h = open(&again, info(0, 1, 0xb3), Some(snap));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (0, 1));
    assert_eq!(exactly_once(&read_to_end(&broker.config(), "crash")).len(), 40);
}

#[test]
fn exactly_once_never_commits_an_epoch_twice() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("twice", 1).unwrap();
    let sink = eos_sink(broker.config(), "twice", "eos-twice");
    let mut h = open(&sink, info(0, 1, 0xc1), None);
    h.process(strings(0..20, "e1-")).unwrap();
    let snap1 = h.snapshot(1).unwrap();
    h.process(strings(0..30, "e2-")).unwrap();
    let snap2 = h.snapshot(2).unwrap();
    // Epoch 1 commits; then the process dies before checkpoint 2's notification.
    h.notify_checkpoint_complete(1).unwrap();
    drop(h);
    assert_eq!(read_to_end(&broker.config(), "twice").len(), 20);

    // Restored from checkpoint 1, whose epoch was committed before the crash: skipped.
    let restored = eos_sink(broker.config(), "twice", "eos-twice");
    let metrics = restored.metrics();
    drop(open(&restored, info(0, 1, 0xc2), Some(snap1)));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (0, 1));
    assert_eq!(read_to_end(&broker.config(), "twice").len(), 20);

    // Restored from checkpoint 2 (pending: epochs 1 and 2): only epoch 2 is written.
    let restored = eos_sink(broker.config(), "twice", "eos-twice");
    let metrics = restored.metrics();
    let mut h = open(&restored, info(0, 1, 0xc3), Some(snap2));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (1, 1));
    let got = read_to_end(&broker.config(), "twice");
    assert_eq!(got.len(), 50);
    let values = exactly_once(&got);
    assert!(values.contains("e1-19") && values.contains("e2-29"));

    // The restored attempt goes on with checkpoints of its own.
    h.process(strings(0..5, "e3-")).unwrap();
    h.snapshot(3).unwrap();
    h.notify_checkpoint_complete(3).unwrap();
    let got = read_to_end(&broker.config(), "twice");
    assert_eq!(exactly_once(&got).len(), 55);
    let epoch3: Vec<_> = stamps(&got).into_iter().filter(|(s, _)| s.epoch == 3).collect();
    assert_eq!(epoch3.len(), 5);
    assert!(epoch3.iter().all(|(s, _)| s.attempt == 0xc3));
}

#[test]
fn the_restored_subtask_fences_the_previous_attempt() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("zombie", 1).unwrap();
    let sink = eos_sink(broker.config(), "zombie", "eos-zombie");
    let mut zombie = open(&sink, info(0, 1, 0xf1), None);
    zombie.process(strings(0..10, "z")).unwrap();
    let snap = zombie.snapshot(1).unwrap();
    // The job restarted while the old subtask still runs (a hung thread, a partitioned node).
    let restored = eos_sink(broker.config(), "zombie", "eos-zombie");
    let _h = open(&restored, info(0, 1, 0xf2), Some(snap));
    assert_eq!(exactly_once(&read_to_end(&broker.config(), "zombie")).len(), 10);
    // The old attempt's late notification cannot commit: its producer was fenced.
    let err = zombie.notify_checkpoint_complete(1).unwrap_err();
    assert!(err.to_string().contains("fence"), "{err}");
    drop(zombie);
    assert_eq!(exactly_once(&read_to_end(&broker.config(), "zombie")).len(), 10);
}

#[test]
fn pending_epochs_of_two_subtasks_are_committed_once_by_one() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("rescale", 2).unwrap();
    let sink = eos_sink(broker.config(), "rescale", "eos-rescale");
    let mut snaps = Vec::new();
    for subtask in 0..2 {
        let mut h = open(&sink, info(subtask, 3, 0xd1), None);
        h.process(strings(0..25, &format!("s{subtask}-"))).unwrap();
        snaps.push(h.snapshot(7).unwrap());
        assert_eq!(snaps[subtask].operator.len(), 1, "one item per subtask");
    }
    // A subtask with nothing pending still leaves its item, keeping items in subtask order.
    let mut idle = open(&sink, info(2, 3, 0xd1), None);
    snaps.push(idle.snapshot(7).unwrap());
    assert_eq!(snaps[2].operator.len(), 1);
    drop(idle);

    let only = StateSnapshot::for_subtask(&snaps, KeyGroupRange::for_subtask(128, 1, 0), 0, 1);
    let restored = eos_sink(broker.config(), "rescale", "eos-rescale");
    let metrics = restored.metrics();
    let mut h = open(&restored, info(0, 1, 0xd2), Some(only.clone()));
    assert_eq!(metrics.epochs_recovered(), 2);
    let got = read_to_end(&broker.config(), "rescale");
    assert_eq!(got.len(), 50);
    exactly_once(&got);
    let txns: BTreeSet<_> = stamps(&got)
        .into_iter()
        .map(|(s, _)| (s.subtask, s.transactional_id))
        .collect();
    let expected: BTreeSet<_> = [(0, "eos-rescale-0".to_string()), (1, "eos-rescale-1".to_string())].into();
    assert_eq!(
        txns, expected,
        "each old subtask's epoch under its own transactional id"
    );

    // The new subtask's own epochs follow; restoring the old checkpoint again adds nothing.
    h.process(strings(0..10, "new-")).unwrap();
    h.snapshot(8).unwrap();
    h.notify_checkpoint_complete(8).unwrap();
    drop(h);
    let again = eos_sink(broker.config(), "rescale", "eos-rescale");
    let metrics = again.metrics();
    drop(open(&again, info(0, 1, 0xd3), Some(only)));
    assert_eq!(metrics.epochs_already_committed(), 2);
    assert_eq!(exactly_once(&read_to_end(&broker.config(), "rescale")).len(), 60);
}

#[test]
fn exactly_once_without_checkpoints_commits_at_the_end() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("eos-end", 1).unwrap();
    let sink = eos_sink(broker.config(), "eos-end", "eos-end");
    let mut i = info(0, 1, 0xe1);
    i.checkpointing = false;
    let mut h = open(&sink, i, None);
    h.process(strings(0..10, "x")).unwrap();
    assert!(read_to_end(&broker.config(), "eos-end").is_empty());
    h.finish().unwrap();
    let got = read_to_end(&broker.config(), "eos-end");
    assert_eq!(exactly_once(&got).len(), 10);
    assert_eq!(sink.metrics().transactions_committed(), 1);
}

#[test]
fn dead_letters_keep_key_payload_and_origin_even_large_and_binary() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("dlq", 1).unwrap();
    let config = broker.config().set("message.max.bytes", "2000000");
    let sink = KafkaSink::dead_letters(config.clone(), "dlq").build().unwrap();
    let metrics = sink.metrics();
    let big: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let letters = vec![
        DeadLetter {
            error: "expected value at line 1 column 1".into(),
            topic: "payments".into(),
            partition: 2,
            offset: 41,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"user-7".to_vec()),
            payload: Some(b"{not json".to_vec()),
        },
        DeadLetter {
            error: "too big to parse".into(),
            topic: "payments".into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            key: None,
            payload: Some(big.clone()),
        },
        DeadLetter {
            error: "invalid UTF-8".into(),
            topic: "payments".into(),
            partition: 1,
            offset: 0,
            timestamp: Some(5),
            key: Some(vec![0, 0xff, 0xfe]),
            payload: Some(vec![0xc3, 0x28, 0, 0xff, b'\n']),
        },
    ];
    let mut h = OperatorHarness::new(Box::new(sink), info(0, 1, 1), 0).unwrap();
    h.process(letters.iter().cloned().map(Record::untimed).collect())
        .unwrap();
    h.snapshot(1).unwrap();
    assert_eq!(metrics.records_written(), 3);

    let got = read_to_end(&config, "dlq");
    assert_eq!(got.len(), 3);
    for (g, d) in got.iter().zip(&letters) {
        assert_eq!(g.key, d.key);
        assert_eq!(g.value, d.payload, "payload unchanged");
        assert_eq!(g.header(dl::ERROR), Some(d.error.as_bytes()));
        assert_eq!(g.header(dl::TOPIC), Some(d.topic.as_bytes()));
        assert_eq!(g.header(dl::PARTITION), Some(d.partition.to_string().as_bytes()));
        assert_eq!(g.header(dl::OFFSET), Some(d.offset.to_string().as_bytes()));
        assert_eq!(
            g.header(dl::TIMESTAMP),
            d.timestamp.map(|t| t.to_string().into_bytes()).as_deref()
        );
    }
    assert_eq!(got[1].value.as_ref().map(Vec::len), Some(1024 * 1024));
}

#[test]
fn bad_configuration_fails_at_build_and_oversized_records_fail_loudly() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("small", 1).unwrap();
    let err = KafkaSink::<String>::builder(broker.config(), "")
        .serializer(Utf8)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "Kafka sink for topic ``: the topic name is empty");
    let err: RuntimeError = KafkaSink::<String>::builder(broker.config(), "t")
        .build()
        .unwrap_err()
        .into();
    assert!(err.to_string().contains("no serializer"), "{err}");

    let config = broker.config().set("message.max.bytes", "1000");
    let sink = KafkaSink::<String>::builder(config, "small")
        .serializer(Utf8)
        .build()
        .unwrap();
    let mut h = OperatorHarness::new(Box::new(sink), info(0, 1, 1), 0).unwrap();
    let err = h.process(vec![Record::untimed("x".repeat(5_000))]).unwrap_err();
    assert!(err.to_string().contains("message.max.bytes"), "{err}");
    assert!(!err.is_retriable(), "the record will never fit: {err}");
}

#[test]
fn undeliverable_records_fail_the_checkpoint() {
    let mut broker = TestBroker::start().unwrap();
    broker.create_topic("gone", 1).unwrap();
    let config = broker.config().set("message.timeout.ms", "1500");
    let sink = KafkaSink::<String>::builder(config, "gone")
        .serializer(Utf8)
        .build()
        .unwrap();
    let metrics = sink.metrics();
    let mut h = OperatorHarness::new(Box::new(sink), info(0, 1, 1), 0).unwrap();
    h.process(strings(0..3, "ok")).unwrap();
    h.snapshot(1).unwrap();
    broker.kill();
    h.process(strings(0..5, "lost")).unwrap();
    let err = h.snapshot(2).unwrap_err();
    assert!(err.to_string().contains("5 record(s) could not be delivered"), "{err}");
    assert!(err.is_retriable(), "a broker outage: a restart may succeed");
    assert_eq!((metrics.records_written(), metrics.records_failed()), (3, 5));
}

#[test]
fn records_the_broker_rejects_fail_the_checkpoint() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    // librdkafka's mock cluster stands in for a broker whose limit is below the producer's.
    let mock = mock_cluster(1).unwrap();
    mock.create_topic("limited", 1, 1).unwrap();
    let config = KafkaConfig::new(mock.bootstrap_servers());
    let sink = KafkaSink::<String>::builder(config, "limited")
        .serializer(Utf8)
        .build()
        .unwrap();
    let mut h = OperatorHarness::new(Box::new(sink), info(0, 1, 1), 0).unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    h.process(strings(0..1, "too-large-for-the-broker")).unwrap();
    let err = h.snapshot(1).unwrap_err();
    assert!(err.to_string().contains("could not be delivered"), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}
