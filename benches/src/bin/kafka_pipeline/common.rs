//! What both sides of the comparison share: the records, the transform, the client
//! settings, and the helpers that write the input and count the output (none of them timed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use floe_dsl::kafka::KafkaConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// An input record: `{"key":"k123","seq":N,"ts":T,"amount":12.34,"tag":"checkout"}`, 75–90
/// bytes of JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// One of 1,000 keys.
    pub key: String,
    /// The record's index in the input.
    pub seq: u64,
    /// Send time in ns since [`epoch`] (latency runs), else the index again.
    pub ts: u64,
    /// Some number.
    pub amount: f64,
    /// Some text.
    pub tag: String,
}

/// An output record: the input plus one computed field.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enriched {
    /// As in the input.
    pub key: String,
    /// As in the input.
    pub seq: u64,
    /// As in the input.
    pub ts: u64,
    /// As in the input.
    pub amount: f64,
    /// As in the input.
    pub tag: String,
    /// The added field.
    pub bucket: u32,
}

/// The map both sides apply, between parsing the input JSON and writing the output JSON.
pub fn enrich(e: Event) -> Enriched {
    Enriched {
        bucket: (e.seq % 64) as u32,
        key: e.key,
        seq: e.seq,
        ts: e.ts,
        amount: e.amount,
        tag: e.tag,
    }
}

const TAGS: [&str; 4] = ["checkout", "refund", "view", "add-to-cart"];

/// The JSON of input record `seq` with timestamp `ts`, written into `out`.
pub fn write_event(out: &mut Vec<u8>, seq: u64, ts: u64) {
    use std::io::Write as _;
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        r#"{{"key":"k{}","seq":{seq},"ts":{ts},"amount":{}.{:02},"tag":"{}"}}"#,
        seq % 1000,
        seq % 997,
        seq % 100,
        TAGS[(seq % 4) as usize]
    );
}

/// The instant latency timestamps count from (the first call fixes it).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// librdkafka properties given to both sides of a comparison: producer ones to the bare
/// producer and the Floe sink, consumer ones to the bare consumer and the Floe source.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Producer properties.
    pub producer: Vec<(String, String)>,
    /// Consumer properties.
    pub consumer: Vec<(String, String)>,
}

impl ClientSettings {
    /// The producer configuration.
    pub fn producer_config(&self, brokers: &str) -> KafkaConfig {
        with(KafkaConfig::new(brokers), &self.producer)
    }

    /// The consumer configuration.
    pub fn consumer_config(&self, brokers: &str) -> KafkaConfig {
        with(KafkaConfig::new(brokers), &self.consumer)
    }

    /// One line per client kind, for the report.
    pub fn describe(&self) -> String {
        let show = |v: &[(String, String)]| v.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
        format!(
            "producers: {}\n  consumers: {}",
            show(&self.producer),
            show(&self.consumer)
        )
    }
}

fn with(mut c: KafkaConfig, props: &[(String, String)]) -> KafkaConfig {
    for (k, v) in props {
        c = c.set(k, v);
    }
    c
}

/// Sets (or replaces) `key` in `props`.
pub fn set(props: &mut Vec<(String, String)>, key: &str, value: &str) {
    match props.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value.to_string(),
        None => props.push((key.to_string(), value.to_string())),
    }
}

/// Parses `key=value` pairs given on the command line.
pub fn parse_properties(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("property `{p}` is not of the form key=value"),
        })
        .collect()
}

/// A producer context that counts acknowledgements and failures.
#[derive(Default)]
pub struct Acks {
    /// Records acknowledged by the broker.
    pub acked: AtomicU64,
    /// Records that could not be delivered.
    pub failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A producer that counts acknowledgements.
pub type CountingProducer = BaseProducer<Acks>;

/// Creates a counting producer.
pub fn producer(config: &KafkaConfig, extra: &[(&str, &str)]) -> anyhow::Result<CountingProducer> {
    let mut c = config.client_config(&[]);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create_with_context(Acks::default())
        .with_context(|| format!("creating a producer for {}", config.brokers))
}

/// Sends `record`, serving delivery reports while librdkafka's queue is full.
pub fn send(producer: &CountingProducer, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("producing a record"),
        }
    }
}

/// Flushes `producer` and fails if any record was not delivered.
pub fn flush(producer: &CountingProducer, what: &str) -> anyhow::Result<()> {
    producer
        .flush(Duration::from_secs(120))
        .with_context(|| format!("flushing the {what} producer"))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records of the {what} producer were not delivered");
    }
    Ok(())
}

/// Writes `n` input records to partitions `seq % partitions` of `topic`, in big batches,
/// except that the last record of each partition is a batch of its own: tansu 0.6 answers
/// ListOffsets(latest) with the base offset of the last batch plus one, and the Floe
/// source's bounded mode stops there.
pub fn preload(brokers: &str, topic: &str, n: u64, partitions: i32) -> anyhow::Result<()> {
    let config = KafkaConfig::new(brokers);
    let bulk = producer(
        &config,
        &[
            ("linger.ms", "20"),
            ("batch.num.messages", "10000"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.messages", "1000000"),
        ],
    )?;
    let single = producer(&config, &[("linger.ms", "0"), ("batch.num.messages", "1")])?;
    let p = partitions as u64;
    let mut buf = Vec::with_capacity(128);
    for seq in 0..n {
        if seq + p >= n {
            if seq + p == n {
                flush(&bulk, "input")?;
            }
            write_event(&mut buf, seq, seq);
            send(&single, BaseRecord::to(topic).partition((seq % p) as i32).payload(&buf))?;
            flush(&single, "input")?;
            continue;
        }
        write_event(&mut buf, seq, seq);
        send(&bulk, BaseRecord::to(topic).partition((seq % p) as i32).payload(&buf))?;
        if seq.is_multiple_of(4096) {
            bulk.poll(Duration::ZERO);
        }
    }
    flush(&bulk, "input")
}

/// A consumer assigned every partition of `topic` from the beginning (no group join).
pub fn assigned_consumer(config: &KafkaConfig, topic: &str, extra: &[(&str, &str)]) -> anyhow::Result<BaseConsumer> {
    let mut c = config.client_config(&[
        ("group.id", "floe-kafka-pipeline-reader"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
    ]);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().context("creating a consumer")?;
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of topic {topic}"))?;
    let partitions = meta
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    Ok(consumer)
}

/// What the output topic holds.
#[derive(Debug)]
pub struct OutputCount {
    /// Records read.
    pub total: u64,
    /// Distinct `seq` values among them.
    pub distinct: u64,
}

/// Reads `topic` until `expected` distinct sequence numbers are seen, or nothing new came
/// for 5 s (tansu's high watermarks are not reliable after batches of several records, so
/// the records are counted by reading them).
pub fn count_output(brokers: &str, topic: &str, expected: u64) -> anyhow::Result<OutputCount> {
    let consumer = assigned_consumer(&KafkaConfig::new(brokers), topic, &[])?;
    let mut seen = vec![false; expected as usize];
    let (mut total, mut distinct) = (0u64, 0u64);
    let mut last_new = Instant::now();
    while distinct < expected && last_new.elapsed() < Duration::from_secs(5) {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.with_context(|| format!("reading {topic}"))?;
        last_new = Instant::now();
        total += 1;
        let payload = rdkafka::Message::payload(&m).unwrap_or_default();
        let out: Enriched =
            serde_json::from_slice(payload).with_context(|| format!("an output record of {topic} is not JSON"))?;
        if let Some(s) = seen.get_mut(out.seq as usize) {
            if !*s {
                *s = true;
                distinct += 1;
            }
        }
    }
    Ok(OutputCount { total, distinct })
}
