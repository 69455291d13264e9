//! A Kafka source whose next offset the broker deleted before it was read, on a real broker
//! that deletes: librdkafka's mock cluster keeps only the last 5 MB of each partition (its
//! retention, not configurable), so writing 10 MB moves the log start past what a source
//! had not read yet. (tansu keeps everything and has no DeleteRecords.)
//!
//! By default the source fails, naming the topic, the partition, its position and the
//! offsets the partition holds; with a policy it skips, counting exactly the offsets it
//! skipped in `floe_kafka_records_lost_total`, and reads everything after them. Positions
//! come from a checkpoint, or from records read while the broker deleted the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_checkpoints::{KeyGroupRange, StateSnapshot};
use floe_operators::kafka::source::{
    Envelope, KafkaSource, KafkaSourceBuilder, OffsetOutOfRange, Utf8, WithMetadata, RECORDS_LOST_METRIC,
};
use floe_operators::kafka::testing::mock_cluster;
use floe_operators::kafka::KafkaConfig;
use floe_runtime::harness::CollectedOutput;
use floe_runtime::metrics::Registry;
use floe_runtime::{
    downcast_batch, CheckpointBarrier, OperatorContext, RuntimeError, SourceFunction, SystemClock, TaskInfo,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const DEADLINE: Duration = Duration::from_secs(60);
/// Bigger than the 5 MB the mock cluster keeps of a partition.
const BIG_RECORDS: usize = 100;
const BIG: usize = 100_000;

/// One source subtask driven by hand, with the offsets of what it emitted.
struct Sub {
    source: KafkaSource<Envelope<String>>,
    ctx: OperatorContext,
    out: CollectedOutput,
    offsets: Vec<i64>,
}

impl Sub {
    fn open(source: KafkaSource<Envelope<String>>, job: &str, restored: Option<&StateSnapshot>) -> Sub {
        let mut info = TaskInfo::new(job, "kafka", 0, 1, 128);
        info.batch_size = 10;
        let mut ctx = OperatorContext::new(info, Arc::new(SystemClock));
        if let Some(s) = restored {
            let part = StateSnapshot::for_subtask(std::slice::from_ref(s), KeyGroupRange::for_subtask(128, 1, 0), 0, 1);
            ctx.set_restored_state(part);
        }
        let mut source = source;
        source.open(&mut ctx).expect("open");
        Sub {
            source,
            ctx,
            out: CollectedOutput::default(),
            offsets: Vec::new(),
        }
    }

    fn poll(&mut self) -> Result<(), RuntimeError> {
        self.source.poll_batch(&mut self.ctx, &mut self.out)?;
        for b in self.out.main.drain(..) {
            self.offsets.extend(
                downcast_batch::<Envelope<String>>(b)?
                    .into_iter()
                    .map(|r| r.value.offset),
            );
        }
        Ok(())
    }

    /// Polls until `done` holds or the poll fails (the error is returned).
    fn poll_until(&mut self, what: &str, done: impl Fn(&Sub) -> bool) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + DEADLINE;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.poll()?;
        }
        Ok(())
    }

    fn snapshot(&mut self) -> StateSnapshot {
        let barrier = CheckpointBarrier {
            id: 1,
            timestamp: 0,
            is_savepoint: false,
        };
        self.source.snapshot_state(&barrier, &mut self.ctx).expect("snapshot")
    }
}

struct Broker {
    mock: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: BaseProducer,
}

impl Broker {
    fn start(topic: &str) -> Broker {
        let mock = mock_cluster(1).unwrap();
        mock.create_topic(topic, 1, 1).unwrap();
        let producer: BaseProducer = KafkaConfig::new(mock.bootstrap_servers())
            .client_config(&[("linger.ms", "0"), ("batch.num.messages", "1")])
            .create()
            .unwrap();
        Broker { mock, producer }
    }

    fn config(&self) -> KafkaConfig {
        KafkaConfig::new(self.mock.bootstrap_servers())
    }

    fn send(&self, topic: &str, payloads: impl IntoIterator<Item = Vec<u8>>) {
        for p in payloads {
            self.producer
                .send(BaseRecord::<(), [u8]>::to(topic).partition(0).payload(&p))
                .map_err(|(e, _)| e)
                .unwrap();
            self.producer.poll(Duration::ZERO);
        }
        self.producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Writes 10 MB: the mock cluster deletes the oldest records to keep 5 MB.
    fn overflow(&self, topic: &str) {
        self.send(
            topic,
            (0..BIG_RECORDS).map(|i| format!("{i:08}").into_bytes().repeat(BIG / 8)),
        );
    }

    /// The first offset the partition holds and its end, as the broker says.
    fn range(&self, topic: &str) -> (i64, i64) {
        let consumer: BaseConsumer = self.config().client_config(&[("group.id", "range")]).create().unwrap();
        consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap()
    }
}

fn source(broker: &Broker, topic: &str) -> KafkaSourceBuilder<Envelope<String>> {
    KafkaSource::builder(broker.config())
        .topic(topic)
        .deserializer(WithMetadata(Utf8))
}

fn lost(job: &str, topic: &str) -> Option<f64> {
    Registry::global().value(
        RECORDS_LOST_METRIC,
        &[
            ("job", job),
            ("operator", "kafka"),
            ("topic", topic),
            ("partition", "0"),
        ],
    )
}

/// A checkpoint at offset 10, then 10 MB more written: the checkpoint's position is gone.
fn checkpoint_then_overflow(broker: &Broker, topic: &str) -> StateSnapshot {
    broker.send(topic, (0..10).map(|i| format!("small {i}").into_bytes()));
    let mut first = Sub::open(source(broker, topic).build().unwrap(), "before", None);
    first
        .poll_until("the first 10 records", |s| s.offsets.len() == 10)
        .unwrap();
    let snapshot = first.snapshot();
    drop(first);
    broker.overflow(topic);
    snapshot
}

#[test]
fn a_restored_position_the_broker_deleted_fails_the_job_by_default() {
    let broker = Broker::start("gone");
    let snapshot = checkpoint_then_overflow(&broker, "gone");
    let (earliest, latest) = broker.range("gone");
    assert!(
        earliest > 10,
        "the broker deleted the records after the checkpoint: {earliest}"
    );
    assert_eq!(latest, 10 + BIG_RECORDS as i64);

    let mut restored = Sub::open(source(&broker, "gone").build().unwrap(), "fail", Some(&snapshot));
    let err = restored
        .poll_until("the out-of-range error", |_| false)
        .expect_err("the job fails")
        .to_string();
    for needle in [
        "topic `gone` partition 0".to_string(),
        "offset 10 ".to_string(),
        format!("holds offsets {earliest}..{latest}"),
        format!("records 10..{} were deleted", earliest - 1),
        "OffsetOutOfRange::SkipToEarliest".to_string(),
    ] {
        assert!(err.contains(&needle), "{needle:?} in {err}");
    }
    assert!(
        restored.offsets.is_empty(),
        "nothing read past the gap: {:?}",
        restored.offsets
    );
    assert_eq!(lost("fail", "gone"), None, "nothing skipped, nothing counted");

    // `auto.offset.reset=error` is the same choice, made with a property.
    let by_property = KafkaSource::builder(broker.config().set("auto.offset.reset", "error"))
        .topic("gone")
        .deserializer(WithMetadata(Utf8))
        .build()
        .unwrap();
    let mut restored = Sub::open(by_property, "fail-by-property", Some(&snapshot));
    assert!(restored.poll_until("the error", |_| false).is_err());
}

#[test]
fn skipping_to_the_earliest_offset_counts_exactly_the_deleted_records() {
    let broker = Broker::start("skip-earliest");
    let snapshot = checkpoint_then_overflow(&broker, "skip-earliest");
    let (earliest, latest) = broker.range("skip-earliest");
    let builder = source(&broker, "skip-earliest").on_offset_out_of_range(OffsetOutOfRange::SkipToEarliest);
    let mut restored = Sub::open(builder.build().unwrap(), "earliest", Some(&snapshot));
    restored
        .poll_until("the records after the gap", |s| s.offsets.last() == Some(&(latest - 1)))
        .unwrap();
    assert_eq!(
        restored.offsets,
        (earliest..latest).collect::<Vec<_>>(),
        "everything the broker holds, once"
    );
    assert_eq!(restored.source.records_lost().get(), (earliest - 10) as u64);
    assert_eq!(lost("earliest", "skip-earliest"), Some((earliest - 10) as f64));
}

#[test]
fn skipping_to_the_latest_offset_counts_everything_skipped_and_reads_what_comes_next() {
    let broker = Broker::start("skip-latest");
    let snapshot = checkpoint_then_overflow(&broker, "skip-latest");
    let (_, latest) = broker.range("skip-latest");
    let builder = KafkaSource::builder(broker.config().set("auto.offset.reset", "latest"))
        .topic("skip-latest")
        .deserializer(WithMetadata(Utf8));
    let mut restored = Sub::open(builder.build().unwrap(), "latest", Some(&snapshot));
    restored
        .poll_until("the skip", |s| s.source.records_lost().get() > 0)
        .unwrap();
    assert_eq!(restored.source.records_lost().get(), (latest - 10) as u64);
    broker.send("skip-latest", (0..3).map(|i| format!("new {i}").into_bytes()));
    restored
        .poll_until("the new records", |s| s.offsets.len() == 3)
        .unwrap();
    assert_eq!(restored.offsets, vec![latest, latest + 1, latest + 2]);
    assert_eq!(lost("latest", "skip-latest"), Some((latest - 10) as f64));
}

/// No checkpoint: the source reads, the broker deletes what it has not fetched yet (its
/// fetch queue is kept small), and every offset is then either read or counted lost.
#[test]
fn records_deleted_while_the_source_reads_are_either_read_or_counted() {
    let broker = Broker::start("live");
    broker.send("live", (0..10).map(|i| format!("small {i}").into_bytes()));
    // Little prefetched: the broker deletes what the consumers have not fetched.
    let config = broker.config().set("queued.max.messages.kbytes", "200");
    let build = |policy| {
        KafkaSource::builder(config.clone())
            .topic("live")
            .deserializer(WithMetadata(Utf8))
            .on_offset_out_of_range(policy)
            .build()
            .unwrap()
    };
    let mut failing = Sub::open(build(OffsetOutOfRange::Fail), "live-fail", None);
    let mut skipping = Sub::open(build(OffsetOutOfRange::SkipToEarliest), "live-skip", None);
    failing
        .poll_until("the first records", |s| s.offsets.len() == 10)
        .unwrap();
    skipping
        .poll_until("the first records", |s| s.offsets.len() == 10)
        .unwrap();
    broker.overflow("live");
    let (earliest, latest) = broker.range("live");
    assert!(earliest > 20, "{earliest}");

    let err = failing
        .poll_until("the out-of-range error", |_| false)
        .expect_err("fails by default")
        .to_string();
    let position = *failing.offsets.last().unwrap() + 1;
    assert!(err.contains(&format!("offset {position} ")), "{err}");
    assert_eq!(failing.offsets, (0..position).collect::<Vec<_>>());

    skipping
        .poll_until("the end of the partition", |s| s.offsets.last() == Some(&(latest - 1)))
        .unwrap();
    let read = &skipping.offsets;
    let lost_count = skipping.source.records_lost().get() as i64;
    assert_eq!(
        read.len() as i64 + lost_count,
        latest,
        "each offset read or counted lost"
    );
    let gaps: Vec<&[i64]> = read.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert_eq!(gaps.len(), 1, "one gap: {gaps:?}");
    assert_eq!(gaps[0][1] - gaps[0][0] - 1, lost_count, "the gap is what was counted");
    assert_eq!(gaps[0][1], earliest, "resumed at the partition's first offset");
}
