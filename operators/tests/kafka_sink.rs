//! The Kafka sink against a real Kafka-protocol broker (tansu on loopback): at-least-once
//! and exactly-once delivery, recovery of pending transactions after a crash and on
//! rescale, dead letters, and errors that are never silent.
//!
//! tansu does not hide aborted transactions from `read_committed` consumers, so these tests
//! read what such a consumer would see from the raw log (`TestBroker::read_committed`:
//! records of transactions that a COMMIT marker closes), and check exactly-once by the
//! records' own values: each value written must be committed exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use floe_checkpoints::{KeyGroupRange, StateSnapshot};
use floe_operators::kafka::dead_letter::{headers as dl, DeadLetter};
use floe_operators::kafka::sink::{eos_headers, Delivery, EosStamp, Json, KafkaSink, Utf8};
use floe_operators::kafka::testing::{check_exactly_once, describe, mock_cluster, CommittedRecord, TestBroker};
use floe_operators::kafka::KafkaConfig;
use floe_runtime::harness::OperatorHarness;
use floe_runtime::{Record, RuntimeError, TaskInfo};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The committed records of `topic`, in partition and offset order.
fn read(broker: &TestBroker, topic: &str) -> Vec<CommittedRecord> {
    broker.read_committed(topic).unwrap().records
}

/// Fails, naming each value missing or doubled, unless the committed records of `topic`
/// are `expected`, each exactly once; returns them.
fn exactly_once(broker: &TestBroker, topic: &str, expected: impl IntoIterator<Item = String>) -> Vec<CommittedRecord> {
    let read = broker.read_committed(topic).unwrap();
    if let Err(v) = check_exactly_once(topic, expected, &read.records, |r| Ok(vec![r.value_str()])) {
        panic!("{v}\n(read: {})", describe(&read));
    }
    read.records
}

/// `"<prefix><i>"` for `i` in `range`: the values [`strings`] makes.
fn values(range: std::ops::Range<u32>, prefix: &str) -> impl Iterator<Item = String> + '_ {
    range.map(move |i| format!("{prefix}{i}"))
}

/// The exactly-once stamps of `records`, each with its value; fails on a record without one.
fn stamps(records: &[CommittedRecord]) -> Vec<(EosStamp, String)> {
    records
        .iter()
        .map(|g| {
            let mut h = OwnedHeaders::new();
            for (k, v) in &g.headers {
                h = h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
            (EosStamp::from_headers(&h).expect("a floe.* stamp"), g.value_str())
        })
        .collect()
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

    let got = read(&broker, "alo");
    assert_eq!(got.len(), 300);
    let mut partition_of_key = BTreeMap::new();
    let mut last_seq_of_key: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for g in &got {
        let key = g.key.clone().unwrap();
        let seq: i64 = String::from_utf8_lossy(g.header("seq").unwrap()).parse().unwrap();
        assert_eq!(g.value_str(), format!(r#"{{"user":{},"seq":{seq}}}"#, seq % 7));
        assert_eq!(key, format!("user-{}", seq % 7).into_bytes());
        assert_eq!(g.timestamp, 5_000 + seq, "the event timestamp");
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
    let got = read(&broker, "parts");
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
    assert!(read(&broker, "eos").is_empty(), "nothing before completion");

    h.notify_checkpoint_complete(1).unwrap();
    let got = exactly_once(&broker, "eos", values(0..50, "a"));
    for (stamp, value) in stamps(&got) {
        assert_eq!(stamp.transactional_id, "eos-visible-0");
        assert_eq!((stamp.subtask, stamp.attempt, stamp.epoch), (0, 0xa1, 1));
        assert_eq!(stamp.committed_by, Some(0xa1));
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
    exactly_once(&broker, "eos", values(0..60, "a"));
    h.notify_checkpoint_complete(3).unwrap();
    exactly_once(&broker, "eos", values(0..65, "a"));
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
    assert!(read(&broker, "crash").is_empty());

    let restored = eos_sink(broker.config(), "crash", "eos-crash");
    let metrics = restored.metrics();
    let h = open(&restored, info(0, 1, 0xb2), Some(snap.clone()));
    assert_eq!(metrics.epochs_recovered(), 1, "committed while opening");
    let got = exactly_once(&broker, "crash", values(0..40, "c"));
    assert!(
        stamps(&got)
            .iter()
            .all(|(s, _)| (s.attempt, s.epoch, s.committed_by) == (0xb1, 1, Some(0xb2))),
        "attempt b1's epoch, committed by the restored attempt b2"
    );
    drop(h);

    // The restored attempt crashed too: restoring the same checkpoint again adds nothing.
    let again = eos_sink(broker.config(), "crash", "eos-crash");
    let metrics = again.metrics();
    let _h = open(&again, info(0, 1, 0xb3), Some(snap));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (0, 1));
    exactly_once(&broker, "crash", values(0..40, "c"));
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
    exactly_once(&broker, "twice", values(0..20, "e1-"));

    // Restored from checkpoint 1, whose epoch was committed before the crash: skipped.
    let restored = eos_sink(broker.config(), "twice", "eos-twice");
    let metrics = restored.metrics();
    drop(open(&restored, info(0, 1, 0xc2), Some(snap1)));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (0, 1));
    exactly_once(&broker, "twice", values(0..20, "e1-"));

    // Restored from checkpoint 2 (pending: epochs 1 and 2): only epoch 2 is written.
    let restored = eos_sink(broker.config(), "twice", "eos-twice");
    let metrics = restored.metrics();
    let mut h = open(&restored, info(0, 1, 0xc3), Some(snap2));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (1, 1));
    exactly_once(&broker, "twice", values(0..20, "e1-").chain(values(0..30, "e2-")));

    // The restored attempt goes on with checkpoints of its own.
    h.process(strings(0..5, "e3-")).unwrap();
    h.snapshot(3).unwrap();
    h.notify_checkpoint_complete(3).unwrap();
    let all = values(0..20, "e1-")
        .chain(values(0..30, "e2-"))
        .chain(values(0..5, "e3-"));
    let got = exactly_once(&broker, "twice", all);
    let epoch3: Vec<_> = stamps(&got).into_iter().filter(|(s, _)| s.epoch == 3).collect();
    assert_eq!(epoch3.len(), 5);
    assert!(epoch3.iter().all(|(s, _)| s.attempt == 0xc3));
    let origins: BTreeSet<(u64, u64, Option<u64>)> = stamps(&got)
        .into_iter()
        .map(|(s, _)| (s.epoch, s.attempt, s.committed_by))
        .collect();
    let expected: BTreeSet<_> = [(1, 0xc1, Some(0xc1)), (2, 0xc1, Some(0xc3)), (3, 0xc3, Some(0xc3))].into();
    assert_eq!(
        origins, expected,
        "epoch 2 of attempt c1 committed by the restored attempt c3"
    );
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
    exactly_once(&broker, "zombie", values(0..10, "z"));
    // The old attempt's late notification cannot commit: its producer was fenced.
    let err = zombie.notify_checkpoint_complete(1).unwrap_err();
    assert!(err.to_string().contains("fence"), "{err}");
    drop(zombie);
    exactly_once(&broker, "zombie", values(0..10, "z"));
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
    let got = exactly_once(&broker, "rescale", values(0..25, "s0-").chain(values(0..25, "s1-")));
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
    let all = values(0..25, "s0-")
        .chain(values(0..25, "s1-"))
        .chain(values(0..10, "new-"));
    exactly_once(&broker, "rescale", all);
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
    assert!(read(&broker, "eos-end").is_empty());
    h.finish().unwrap();
    exactly_once(&broker, "eos-end", values(0..10, "x"));
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

    let got = read(&broker, "dlq");
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

/// What the sink's commit marker relies on, on the test broker: a transaction's offset
/// commit (`send_offsets_to_transaction`) becomes visible when the transaction commits, and
/// never when it aborts or is left open and fenced. (A probe found that tansu 0.6 does not
/// apply it at all for a transaction that wrote no record; every epoch the sink commits
/// holds at least one.)
#[test]
fn the_broker_applies_a_transactions_offset_commit_only_when_it_commits() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("marked", 1).unwrap();
    let timeout = Duration::from_secs(30);
    let group = "floe-eos-probe";
    let marker: BaseConsumer = broker
        .config()
        .client_config(&[("group.id", group), ("isolation.level", "read_committed")])
        .create()
        .unwrap();
    let committed = || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("marked", 0);
        let got = marker.committed_offsets(tpl, timeout).unwrap();
        match got.find_partition("marked", 0).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        }
    };
    let producer = || {
        let p: BaseProducer = broker
            .config()
            .client_config(&[("transactional.id", "marker-probe")])
            .create()
            .unwrap();
        p.init_transactions(timeout).unwrap();
        p
    };
    let transaction = |p: &BaseProducer, epoch: i64| {
        p.begin_transaction().unwrap();
        p.send(BaseRecord::<str, str>::to("marked").payload("x")).unwrap();
        p.flush(timeout).unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("marked", 0, Offset::Offset(epoch)).unwrap();
        p.send_offsets_to_transaction(&tpl, &marker.group_metadata().unwrap(), timeout)
            .unwrap();
    };
    let p = producer();
    transaction(&p, 5);
    p.abort_transaction(timeout).unwrap();
    assert_eq!(committed(), None, "aborted");
    transaction(&p, 7);
    assert_eq!(committed(), None, "open");
    p.commit_transaction(timeout).unwrap();
    assert_eq!(committed(), Some(7), "committed");
    transaction(&p, 9);
    let _fencing = producer();
    assert_eq!(committed(), Some(7), "left open, then fenced");
    let read = broker.read_committed("marked").unwrap();
    assert_eq!((read.records.len(), read.aborted), (1, 2));
}

/// An epoch whose records are committed but whose commit marker is missing (what tansu
/// leaves when the committing process is killed during the commit) is not committed again
/// after a restore: the sink finds its stamps in the topic's committed log.
#[test]
fn an_epoch_committed_without_its_marker_is_found_in_the_log_and_not_committed_again() {
    let broker = TestBroker::start().unwrap();
    broker.create_topic("lost", 2).unwrap();
    let sink = eos_sink(broker.config(), "lost", "eos-lost");
    let mut h = open(&sink, info(0, 1, 0xe7), None);
    h.process(strings(0..30, "m")).unwrap();
    let snap = h.snapshot(1).unwrap();
    drop(h);
    // Epoch 1 committed as the sink writes it (same transactional id and stamps), but
    // without the offset commit that marks it.
    let timeout = Duration::from_secs(30);
    let p: BaseProducer = broker
        .config()
        .client_config(&[("transactional.id", "eos-lost-0")])
        .create()
        .unwrap();
    p.init_transactions(timeout).unwrap();
    p.begin_transaction().unwrap();
    for (seq, value) in values(0..30, "m").enumerate() {
        let stamp = EosStamp {
            transactional_id: "eos-lost-0".into(),
            subtask: 0,
            attempt: 0xe7,
            epoch: 1,
            seq: seq as u64,
            committed_by: None,
        }
        .to_headers();
        p.send(BaseRecord::to("lost").key(&value).payload(&value).headers(stamp))
            .unwrap();
    }
    p.flush(timeout).unwrap();
    p.commit_transaction(timeout).unwrap();
    drop(p);

    let restored = eos_sink(broker.config(), "lost", "eos-lost");
    let metrics = restored.metrics();
    drop(open(&restored, info(0, 1, 0xe8), Some(snap)));
    assert_eq!((metrics.epochs_recovered(), metrics.epochs_already_committed()), (0, 1));
    exactly_once(&broker, "lost", values(0..30, "m"));
}
