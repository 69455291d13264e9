//! The Kafka source against a real Kafka-protocol broker (tansu on loopback): partitions
//! split over subtasks, exact resume from checkpoints at another parallelism, start
//! positions, committed group offsets, partition and topic discovery, dead letters,
//! per-partition watermarks with idleness, keys and headers.
//!
//! The sources are driven by hand (open, poll, snapshot, notify) as a source task would;
//! every wait is a poll loop until a condition holds, with a generous deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_checkpoints::{decode, KeyGroupRange, StateSnapshot};
use floe_operators::kafka::source::{
    assigned_subtask, Envelope, Json, KafkaSource, KafkaSourceBuilder, OffsetReset, StartPosition, TimestampsFrom,
    Utf8, WithMetadata,
};
use floe_operators::kafka::testing::{block_on, mock_cluster, TestBroker};
use floe_operators::kafka::DeadLetter;
use floe_operators::kafka::KafkaConfig;
use floe_runtime::{
    downcast_batch, CheckpointBarrier, OperatorContext, Record, SourceFunction, SourceStatus, SystemClock, TaskInfo,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

const DEADLINE: Duration = Duration::from_secs(60);

/// Everything a source emitted.
type Collected = floe_runtime::harness::CollectedOutput;

/// One source subtask, driven by hand, with what it emitted so far (typed).
struct Sub<T: floe_runtime::Data> {
    source: KafkaSource<T>,
    ctx: OperatorContext,
    out: Collected,
    records: Vec<Record<T>>,
    dead: Vec<Record<DeadLetter>>,
    /// Records emitted at or behind a watermark emitted before them.
    late: usize,
    finished: bool,
}

impl<T: floe_runtime::Data> Sub<T> {
    fn open(source: KafkaSource<T>, index: usize, parallelism: usize, restored: Option<&[StateSnapshot]>) -> Self {
        let mut info = TaskInfo::new("job", "kafka", index, parallelism, 128);
        info.batch_size = 10;
        let mut ctx = OperatorContext::new(info, Arc::new(SystemClock));
        if let Some(old) = restored {
            let range = KeyGroupRange::for_subtask(128, parallelism, index);
            ctx.set_restored_state(StateSnapshot::for_subtask(old, range, index, parallelism));
        }
        let mut source = source;
        source.open(&mut ctx).expect("open");
        Sub {
            source,
            ctx,
            out: Collected::default(),
            records: Vec::new(),
            dead: Vec::new(),
            late: 0,
            finished: false,
        }
    }

    /// Polls once; returns the status.
    fn poll(&mut self) -> SourceStatus {
        if self.finished {
            return SourceStatus::Finished;
        }
        // A poll emits its records before its watermark: a record is late if the watermark
        // emitted before this poll already passed it.
        let watermark = self.out.watermarks.last().copied();
        let status = self.source.poll_batch(&mut self.ctx, &mut self.out).expect("poll");
        for b in self.out.main.drain(..) {
            let batch = downcast_batch::<T>(b).expect("records of T");
            self.late += batch
                .iter()
                .filter(|r| watermark.is_some_and(|w| r.timestamp <= w))
                .count();
            self.records.extend(batch);
        }
        for (_, b) in self.out.side.drain(..) {
            self.dead.extend(downcast_batch::<DeadLetter>(b).expect("dead letters"));
        }
        self.finished = status == SourceStatus::Finished;
        status
    }

    fn values(&self) -> Vec<T> {
        self.records.iter().map(|r| r.value.clone()).collect()
    }

    fn snapshot(&mut self, id: u64) -> StateSnapshot {
        let barrier = CheckpointBarrier {
            id,
            timestamp: 0,
            is_savepoint: false,
        };
        self.source.snapshot_state(&barrier, &mut self.ctx).expect("snapshot")
    }

    fn complete(&mut self, id: u64) {
        self.source
            .notify_checkpoint_complete(id, &mut self.ctx)
            .expect("notify");
    }
}

/// Polls the subtasks in turn until `done` holds (waiting as a source task would when they
/// report idle); panics with `what` at the deadline.
fn poll_until<T: floe_runtime::Data>(subs: &mut [Sub<T>], what: &str, mut done: impl FnMut(&[Sub<T>]) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done(subs) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let mut wait = Some(Duration::from_millis(10));
        for s in subs.iter_mut() {
            match s.poll() {
                SourceStatus::More => wait = None,
                SourceStatus::Idle(d) => wait = wait.map(|w| w.min(d)),
                SourceStatus::Finished => {}
            }
        }
        if let Some(d) = wait {
            std::thread::sleep(d); // the poll interval of a source task whose source is idle
        }
    }
}

fn poll_to_end<T: floe_runtime::Data>(subs: &mut [Sub<T>]) {
    poll_until(subs, "the bounded sources to finish", |s| s.iter().all(|s| s.finished));
}

fn producer(broker: &TestBroker) -> BaseProducer {
    broker
        .config()
        // One record per batch: tansu 0.6 answers ListOffsets(latest) with the end of the
        // last batch's first record, so the end offsets (Latest, bounded reading) are right
        // only for batches of one record.
        .client_config(&[
            ("message.max.bytes", "3000000"),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
        ])
        .create()
        .expect("producer")
}

/// Sends and waits for the broker to acknowledge.
fn send(p: &BaseProducer, topic: &str, partition: i32, payload: Option<&[u8]>, ts: Option<i64>) {
    let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
    if let Some(payload) = payload {
        r = r.payload(payload);
    }
    if let Some(ts) = ts {
        r = r.timestamp(ts);
    }
    p.send(r).map_err(|(e, _)| e).expect("send");
}

fn flush(p: &BaseProducer) {
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn builder<T: floe_runtime::Data>(broker: &TestBroker, topic: &str) -> KafkaSourceBuilder<T> {
    KafkaSource::builder(broker.config()).topics([topic])
}

/// (partition, offset, payload) of envelopes.
fn keyed(records: &[Record<Envelope<String>>]) -> Vec<(i32, i64, String)> {
    records
        .iter()
        .map(|r| (r.value.partition, r.value.offset, r.value.value.clone()))
        .collect()
}

#[test]
fn three_partitions_at_parallelism_two_read_each_record_once_in_order() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("t3", 3).unwrap();
    let p = producer(&broker);
    for i in 0..100 {
        for part in 0..3 {
            send(&p, "t3", part, Some(format!("p{part}-{i}").as_bytes()), None);
        }
    }
    flush(&p);
    let source = builder(&broker, "t3").deserializer(WithMetadata(Utf8)).build().unwrap();
    let mut subs = vec![Sub::open(source.clone(), 0, 2, None), Sub::open(source, 1, 2, None)];
    poll_until(&mut subs, "300 records", |s| {
        s.iter().map(|s| s.records.len()).sum::<usize>() >= 300
    });
    for _ in 0..20 {
        for s in subs.iter_mut() {
            s.poll(); // nothing more may come
        }
    }
    let mut all = BTreeSet::new();
    for (index, s) in subs.iter().enumerate() {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for (part, offset, value) in keyed(&s.records) {
            assert_eq!(
                assigned_subtask("t3", part, 2),
                index,
                "partition {part} read by subtask {index}"
            );
            assert!(
                last.insert(part, offset).is_none_or(|prev| prev < offset),
                "order within partition {part}"
            );
            assert_eq!(value, format!("p{part}-{offset}"));
            assert!(all.insert((part, offset)), "({part}, {offset}) read twice");
        }
    }
    let expected: BTreeSet<(i32, i64)> = (0..3).flat_map(|p| (0..100).map(move |o| (p, o))).collect();
    assert_eq!(all, expected);
    let owners: BTreeSet<usize> = (0..3).map(|p| assigned_subtask("t3", p, 2)).collect();
    assert_eq!(owners.len(), 2, "both subtasks read");
    for s in &subs {
        assert!(
            s.records.iter().all(|r| r.timestamp > 0),
            "records carry the Kafka timestamp"
        );
    }
}

/// The stored next offset of each partition in snapshots.
fn stored(snaps: &[StateSnapshot]) -> BTreeMap<i32, i64> {
    snaps
        .iter()
        .flat_map(|s| s.union.iter())
        .map(|b| {
            let (_, p, o): (String, i32, i64) = decode(b).unwrap();
            (p, o)
        })
        .collect()
}

#[test]
fn restore_resumes_exactly_at_the_checkpoint_at_another_parallelism() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("cr", 4).unwrap();
    let p = producer(&broker);
    for i in 0..150 {
        for part in 0..4 {
            send(&p, "cr", part, Some(format!("{part}:{i}").as_bytes()), None);
        }
    }
    flush(&p);
    let source = builder(&broker, "cr").deserializer(WithMetadata(Utf8)).build().unwrap();
    let mut taken: Vec<(i32, i64, String)> = Vec::new(); // read before the checkpoints
    let offsets_of = |subs: &[Sub<Envelope<String>>]| -> Vec<(i32, i64, String)> {
        subs.iter().flat_map(|s| keyed(&s.records)).collect()
    };

    // Parallelism 2: read some, checkpoint, read on (what follows is lost with the failure).
    let mut a: Vec<_> = (0..2).map(|i| Sub::open(source.clone(), i, 2, None)).collect();
    poll_until(&mut a, "some records at parallelism 2", |s| {
        s.iter().all(|s| s.records.len() >= 40)
    });
    let snaps_a: Vec<StateSnapshot> = a.iter_mut().map(|s| s.snapshot(1)).collect();
    taken.extend(offsets_of(&a));
    let at_a = stored(&snaps_a);
    assert_eq!(at_a.len(), 4, "every partition is in the checkpoint: {at_a:?}");
    for s in a.iter_mut() {
        for _ in 0..5 {
            s.poll();
        }
    }
    drop(a);

    // 2 -> 1: the first record of each partition is the one at the stored offset.
    let mut b = vec![Sub::open(source.clone(), 0, 1, Some(&snaps_a))];
    poll_until(&mut b, "more records at parallelism 1", |s| s[0].records.len() >= 100);
    let snaps_b = vec![b[0].snapshot(2)];
    let read_b = offsets_of(&b);
    for (part, next) in &at_a {
        let first = read_b.iter().find(|r| r.0 == *part).map(|r| r.1);
        assert!(
            first.is_none_or(|f| f == *next),
            "partition {part} resumed at {first:?}, stored {next}"
        );
    }
    taken.extend(read_b);

    // 1 -> 3: to the end.
    let mut c: Vec<_> = (0..3)
        .map(|i| Sub::open(source.clone(), i, 3, Some(&snaps_b)))
        .collect();
    poll_until(&mut c, "the rest", |s| {
        taken.len() + s.iter().map(|s| s.records.len()).sum::<usize>() >= 600
    });
    for s in c.iter_mut() {
        for _ in 0..10 {
            s.poll();
        }
    }
    for (index, s) in c.iter().enumerate() {
        for (part, _, _) in keyed(&s.records) {
            assert_eq!(assigned_subtask("cr", part, 3), index);
        }
    }
    let at_b = stored(&snaps_b);
    let read_c = offsets_of(&c);
    for (part, next) in &at_b {
        let first = read_c.iter().find(|r| r.0 == *part).map(|r| r.1);
        assert!(
            first.is_none_or(|f| f == *next),
            "partition {part} resumed at {first:?}, stored {next}"
        );
    }
    taken.extend(read_c);
    let mut seen = BTreeSet::new();
    for (part, offset, value) in &taken {
        assert_eq!(*value, format!("{part}:{offset}"));
        assert!(seen.insert((*part, *offset)), "({part}, {offset}) read twice");
    }
    assert_eq!(seen.len(), 600, "no record lost");
}

#[test]
fn start_positions_and_committed_group_offsets() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("sp", 2).unwrap();
    let p = producer(&broker);
    let base = 1_600_000_000_000i64;
    for i in 0..10 {
        for part in 0..2 {
            send(
                &p,
                "sp",
                part,
                Some(format!("{part}:{i}").as_bytes()),
                Some(base + i * 1_000),
            );
        }
    }
    flush(&p);
    let payloads = |s: &Sub<String>| -> BTreeSet<String> { s.values().into_iter().collect() };
    let range = |parts: std::ops::Range<i32>, from: i64, to: i64| -> BTreeSet<String> {
        parts
            .flat_map(|p| (from..to).map(move |i| format!("{p}:{i}")))
            .collect()
    };

    // Earliest (the default), bounded: all, then the end.
    let mut e = vec![Sub::open(
        builder(&broker, "sp").deserializer(Utf8).bounded().build().unwrap(),
        0,
        1,
        None,
    )];
    poll_to_end(&mut e);
    assert_eq!(payloads(&e[0]), range(0..2, 0, 10));
    assert!(e[0].records.iter().all(|r| r.timestamp >= base), "Kafka timestamps");

    // Timestamp: from the first record at or after it.
    let ts = builder(&broker, "sp")
        .deserializer(Utf8)
        .start(StartPosition::Timestamp(base + 6_500));
    let mut t = vec![Sub::open(ts.bounded().build().unwrap(), 0, 1, None)];
    poll_to_end(&mut t);
    assert_eq!(payloads(&t[0]), range(0..2, 7, 10));
    let past = builder(&broker, "sp")
        .deserializer(Utf8)
        .start(StartPosition::Timestamp(base + 99_000));
    let mut t = vec![Sub::open(past.bounded().build().unwrap(), 0, 1, None)];
    poll_to_end(&mut t);
    assert!(
        t[0].records.is_empty(),
        "a timestamp after every record starts at the end"
    );

    // Explicit offsets; unlisted partitions from the earliest.
    let explicit = StartPosition::Explicit([(("sp".to_string(), 0), 8)].into_iter().collect());
    let mut x = vec![Sub::open(
        builder(&broker, "sp")
            .deserializer(Utf8)
            .start(explicit)
            .bounded()
            .build()
            .unwrap(),
        0,
        1,
        None,
    )];
    poll_to_end(&mut x);
    assert_eq!(payloads(&x[0]), &range(0..1, 8, 10) | &range(1..2, 0, 10));

    // Latest: only what is written after the start.
    let mut l = vec![Sub::open(
        builder(&broker, "sp")
            .deserializer(Utf8)
            .start(StartPosition::Latest)
            .build()
            .unwrap(),
        0,
        1,
        None,
    )];
    poll_until(&mut l, "the end offsets", |s| {
        let pos = s[0].source.positions();
        pos.len() == 2 && pos.iter().all(|p| p.2 == 10)
    });
    for part in 0..2 {
        send(
            &p,
            "sp",
            part,
            Some(format!("{part}:10").as_bytes()),
            Some(base + 10_000),
        );
    }
    flush(&p);
    poll_until(&mut l, "the new records", |s| s[0].records.len() >= 2);
    assert_eq!(payloads(&l[0]), range(0..2, 10, 11));

    // Offsets of a completed checkpoint go to the consumer group.
    let grouped = builder(&broker, "sp")
        .deserializer(Utf8)
        .group_id("lag-tools")
        .build()
        .unwrap();
    let mut g = vec![Sub::open(grouped, 0, 1, None)];
    poll_until(&mut g, "all 22 records", |s| s[0].records.len() >= 22);
    g[0].snapshot(7);
    g[0].complete(7);
    let lookup: BaseConsumer = broker
        .config()
        .client_config(&[("group.id", "lag-tools"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("sp", 0);
    tpl.add_partition("sp", 1);
    let deadline = Instant::now() + DEADLINE;
    loop {
        g[0].poll(); // serves the commit's callback
        let committed = lookup.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
        let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
        if offsets == vec![Offset::Offset(11), Offset::Offset(11)] {
            break;
        }
        assert!(Instant::now() < deadline, "committed offsets: {offsets:?}");
        std::thread::sleep(Duration::from_millis(50)); // the commit is asynchronous
    }

    // A new source starting from the group's offsets reads only what follows them.
    for part in 0..2 {
        send(
            &p,
            "sp",
            part,
            Some(format!("{part}:11").as_bytes()),
            Some(base + 11_000),
        );
    }
    flush(&p);
    let from_group = builder(&broker, "sp")
        .deserializer(Utf8)
        .group_id("lag-tools")
        .start(StartPosition::GroupOffsets {
            fallback: OffsetReset::Earliest,
        })
        .bounded()
        .build()
        .unwrap();
    let mut n = vec![Sub::open(from_group, 0, 1, None)];
    poll_to_end(&mut n);
    assert_eq!(payloads(&n[0]), range(0..2, 11, 12));
    // A group without offsets falls back.
    let fallback = builder(&broker, "sp")
        .deserializer(Utf8)
        .group_id("new-group")
        .start(StartPosition::GroupOffsets {
            fallback: OffsetReset::Latest,
        })
        .bounded()
        .build()
        .unwrap();
    let mut f = vec![Sub::open(fallback, 0, 1, None)];
    poll_to_end(&mut f);
    assert!(f[0].records.is_empty());
}

#[test]
fn partitions_and_topics_added_while_running_are_read_from_the_start() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("disc-a", 1).unwrap();
    let p = producer(&broker);
    for i in 0..5 {
        send(&p, "disc-a", 0, Some(format!("a0:{i}").as_bytes()), None);
    }
    flush(&p);
    let by_pattern: KafkaSource<String> = KafkaSource::builder(broker.config())
        .topic_pattern("disc-.*")
        .deserializer(Utf8)
        .start(StartPosition::Latest) // partitions found later start at the earliest offset
        .discovery_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    // A named topic that does not exist yet.
    let by_name = builder(&broker, "named-later")
        .deserializer(Utf8)
        .start(StartPosition::Latest)
        .discovery_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut s = vec![Sub::open(by_pattern, 0, 1, None), Sub::open(by_name, 0, 1, None)];
    poll_until(&mut s, "the first discovery", |s| {
        s[0].source.positions() == vec![("disc-a".into(), 0, 5)]
    });
    assert!(s[0].records.is_empty(), "started at the end");

    // A new topic matching the pattern, and the named one.
    broker.create_topic("disc-b", 2).unwrap();
    broker.create_topic("named-later", 2).unwrap();
    let mut expected = BTreeSet::new();
    let mut later = BTreeSet::new();
    for (topic, parts) in [("disc-b", 0..2), ("named-later", 0..2)] {
        for part in parts {
            for i in 0..4 {
                let v = format!("{topic}/{part}:{i}");
                send(&p, topic, part, Some(v.as_bytes()), None);
                if topic == "disc-b" {
                    expected.insert(v)
                } else {
                    later.insert(v)
                };
            }
        }
    }
    flush(&p);

    // More partitions for an existing topic, where the broker can add them.
    let admin: AdminClient<DefaultClientContext> = broker.config().client_config(&[]).create().unwrap();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match block_on(admin.create_partitions([&NewPartitions::new("disc-a", 3)], &opts)) {
        Ok(results) => {
            assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
            let p = producer(&broker); // one that knows the new partitions
            let deadline = Instant::now() + DEADLINE;
            let count = |p: &BaseProducer| {
                let meta = p
                    .client()
                    .fetch_metadata(Some("disc-a"), Duration::from_secs(5))
                    .unwrap();
                meta.topics()[0].partitions().len()
            };
            while count(&p) < 3 {
                assert!(Instant::now() < deadline, "the broker did not add the partitions");
            }
            for part in 1..3 {
                for i in 0..4 {
                    let v = format!("disc-a/{part}:{i}");
                    send(&p, "disc-a", part, Some(v.as_bytes()), None);
                    expected.insert(v);
                }
            }
            flush(&p);
        }
        // tansu 0.6 has no CreatePartitions: new topics take the same path (partitions the
        // source did not know, found by discovery).
        Err(e) => eprintln!("note: the broker cannot add partitions ({e}); new topics only"),
    }
    poll_until(&mut s, "the records of new partitions", |s| {
        s[0].records.len() >= expected.len() && s[1].records.len() >= later.len()
    });
    assert_eq!(s[0].values().into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(s[1].values().into_iter().collect::<BTreeSet<_>>(), later);
    assert_eq!(s[0].source.positions().len(), 1 + expected.len() / 4);
}

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
struct Payment {
    user: u64,
    amount: i64,
}

#[test]
fn records_that_do_not_deserialize_become_dead_letters() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("dl", 1).unwrap();
    let p = producer(&broker);
    let big = format!("\"{}\"", "x".repeat(1_000_000));
    let inputs: Vec<Option<Vec<u8>>> = vec![
        Some(br#"{"user":1,"amount":10}"#.to_vec()),
        Some(b"{oops".to_vec()),
        Some(br#"{"user":"x","amount":1}"#.to_vec()),
        Some(Vec::new()),
        None,
        Some(vec![0xff, 0x00, 0xfe, 0x13]),
        Some(big.into_bytes()),
        Some(br#"{"user":2,"amount":-5}"#.to_vec()),
    ];
    for (i, v) in inputs.iter().enumerate() {
        send(&p, "dl", 0, v.as_deref(), Some(1_000 + i as i64));
    }
    flush(&p);

    let tag = 99;
    let source = builder(&broker, "dl")
        .deserializer(Json::<Payment>::new())
        .dead_letters(tag)
        .bounded()
        .build()
        .unwrap();
    let counter = source.dead_letter_counter();
    let mut s = vec![Sub::open(source, 0, 1, None)];
    poll_to_end(&mut s);
    assert_eq!(
        s[0].values(),
        vec![Payment { user: 1, amount: 10 }, Payment { user: 2, amount: -5 }]
    );
    let dead = &s[0].dead;
    assert_eq!(
        dead.iter().map(|d| d.value.offset).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    for d in dead {
        let o = d.value.offset as usize;
        assert_eq!((d.value.topic.as_str(), d.value.partition), ("dl", 0));
        assert_eq!(d.value.payload, inputs[o], "payload kept as read at offset {o}");
        assert_eq!(d.value.timestamp, Some(1_000 + o as i64));
        assert_eq!(d.timestamp, 1_000 + o as i64);
        assert!(!d.value.error.is_empty());
    }
    assert!(dead[0].value.error.contains("JSON"), "{}", dead[0].value.error);
    assert!(dead[3].value.error.contains("tombstone"), "{}", dead[3].value.error);
    assert_eq!(dead[5].value.payload.as_ref().map(Vec::len), Some(1_000_002));
    assert_eq!(counter.get(), 6);
    assert_eq!(s[0].source.dead_letters(), 6);
    assert_eq!(s[0].source.records_read().get(), 8, "valid and dead letters both read");

    // Without a side output they are only counted (and logged); the job goes on.
    let quiet = builder(&broker, "dl")
        .deserializer(Json::<Payment>::new())
        .bounded()
        .build()
        .unwrap();
    let mut q = vec![Sub::open(quiet, 0, 1, None)];
    poll_to_end(&mut q);
    assert_eq!(q[0].values().len(), 2);
    assert!(q[0].dead.is_empty());
    assert_eq!(q[0].source.dead_letters(), 6);
}

#[test]
fn watermark_is_the_minimum_over_partitions_that_are_not_idle() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("wm", 2).unwrap();
    let p = producer(&broker);
    send(&p, "wm", 0, Some(b"a"), Some(10_000));
    send(&p, "wm", 1, Some(b"b"), Some(5_000));
    flush(&p);
    let strict = builder(&broker, "wm")
        .deserializer(Utf8)
        .max_out_of_orderness(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut s = vec![Sub::open(strict, 0, 1, None)];
    poll_until(&mut s, "two records", |s| s[0].records.len() >= 2);
    assert_eq!(
        s[0].out.watermarks,
        vec![4_899],
        "min over partitions, 100 ms bound, minus 1"
    );
    send(&p, "wm", 1, Some(b"c"), Some(20_000));
    flush(&p);
    poll_until(&mut s, "the watermark of partition 0", |s| {
        s[0].out.watermarks.last() == Some(&9_899)
    });
    send(&p, "wm", 0, Some(b"d"), Some(30_000));
    flush(&p);
    poll_until(&mut s, "the watermark of partition 1", |s| {
        s[0].out.watermarks.last() == Some(&19_899)
    });
    assert!(
        s[0].out.watermarks.windows(2).all(|w| w[0] < w[1]),
        "only advances are emitted"
    );
    assert_eq!(s[0].out.idle, 0, "no idleness without a timeout");

    // With an idle timeout: partition 1 stops holding the watermark once it is quiet.
    let idle = builder(&broker, "wm")
        .deserializer(Utf8)
        .timestamps(TimestampsFrom::field(|v: &String| if v == "e" { 40_000 } else { 0 }))
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut i = vec![Sub::open(idle, 0, 1, None)];
    poll_until(&mut i, "four records", |s| s[0].records.len() >= 4);
    poll_until(&mut i, "idleness of both partitions", |s| s[0].out.idle >= 1);
    send(&p, "wm", 0, Some(b"e"), Some(1));
    flush(&p);
    poll_until(&mut i, "the watermark of partition 0 alone", |s| {
        s[0].out.watermarks.last() == Some(&39_999)
    });
    assert_eq!(
        i[0].records.last().map(|r| r.timestamp),
        Some(40_000),
        "timestamps from the value"
    );

    // A subtask that owns no partition says it is idle.
    broker.create_topic("single", 1).unwrap();
    let other = 1 - assigned_subtask("single", 0, 2);
    let none = builder(&broker, "single").deserializer(Utf8).build().unwrap();
    let mut n = vec![Sub::open(none, other, 2, None)];
    poll_until(&mut n, "the idle subtask", |s| s[0].out.idle == 1);
    assert!(n[0].source.positions().is_empty());
}

#[test]
fn a_partition_whose_records_wait_at_a_slow_broker_is_not_idle() {
    // Partition 0 (broker 1, fast) keeps getting records far ahead in event time; partition 1
    // (broker 2, every answer 1 s late) holds five old ones, fetched one per round trip.
    // Idle after 300 ms without records, partition 1 would let partition 0 carry the
    // watermark past its records while they wait at the broker: they would arrive late.
    let mock = mock_cluster(2).unwrap();
    mock.create_topic("slow", 2, 1).unwrap();
    mock.partition_leader("slow", 0, Some(1)).unwrap();
    mock.partition_leader("slow", 1, Some(2)).unwrap();
    let config = KafkaConfig::new(mock.bootstrap_servers());
    let p: BaseProducer = config
        .client_config(&[("linger.ms", "0"), ("batch.num.messages", "1")])
        .create()
        .unwrap();
    for ts in 1..=5 {
        send(&p, "slow", 1, Some(b"old"), Some(ts));
    }
    flush(&p);
    mock.broker_round_trip_time(2, Duration::from_secs(1)).unwrap();
    let source = KafkaSource::builder(config.set("max.partition.fetch.bytes", "1"))
        .topics(["slow"])
        .deserializer(Utf8)
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut s = vec![Sub::open(source, 0, 1, None)];
    let mut ahead = 100_000;
    let mut next_send = Instant::now();
    poll_until(&mut s, "the five old records", |s| {
        // Partition 0 stays busy: a record every 50 ms, each further ahead.
        if Instant::now() >= next_send {
            ahead += 1;
            send(&p, "slow", 0, Some(b"ahead"), Some(ahead));
            p.poll(Duration::ZERO);
            next_send = Instant::now() + Duration::from_millis(50);
        }
        s[0].records.iter().filter(|r| r.timestamp <= 5).count() == 5
    });
    assert!(
        s[0].records.iter().any(|r| r.timestamp > 100_000),
        "partition 0 was read meanwhile"
    );
    assert_eq!(s[0].late, 0, "records behind the watermark: {:?}", s[0].out.watermarks);
}

#[test]
fn keys_headers_and_origin_are_available_with_metadata() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("meta", 1).unwrap();
    let p = producer(&broker);
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some("abc"),
        })
        .insert(Header {
            key: "empty",
            value: None::<&str>,
        });
    p.send(
        BaseRecord::to("meta")
            .partition(0)
            .key("user-7")
            .payload("hello")
            .timestamp(123_456)
            .headers(headers),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    send(&p, "meta", 0, Some(b"bare"), Some(123_457));
    flush(&p);
    let source = builder(&broker, "meta")
        .deserializer(WithMetadata(Utf8))
        .bounded()
        .build()
        .unwrap();
    let mut s = vec![Sub::open(source, 0, 1, None)];
    poll_to_end(&mut s);
    let got = s[0].values();
    assert_eq!(
        got[0],
        Envelope {
            topic: "meta".into(),
            partition: 0,
            offset: 0,
            timestamp: Some(123_456),
            key: Some(b"user-7".to_vec()),
            headers: vec![("trace".into(), Some(b"abc".to_vec())), ("empty".into(), None)],
            value: "hello".into(),
        }
    );
    assert_eq!((got[1].key.clone(), got[1].headers.len(), got[1].offset), (None, 0, 1));
    assert_eq!(s[0].records[0].timestamp, 123_456);
}
