//! The throughput comparison: the same read–parse–map–serialize–write work, once as a bare
//! rdkafka loop and once as a Floe job, over the same preloaded input topic.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use floe_checkpoints::StateBackendKind;
use floe_dsl::kafka::sink::{Delivery, Json as JsonOut, KafkaSink};
use floe_dsl::kafka::source::{Json, KafkaSource, StartPosition};
use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::Message as _;

use super::common::{self, enrich, flush, send, ClientSettings, Event};

/// What one timed run did.
#[derive(Debug)]
pub struct Run {
    /// Records written to the output topic.
    pub records: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Checkpoints completed (Floe only).
    pub checkpoints: Option<u64>,
}

impl Run {
    /// Records per second.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Consumes `n` records of `input` with one assigned `BaseConsumer`, parses, maps and
/// serializes each like the Floe job, and produces it to `output` with one `BaseProducer`,
/// until all `n` are acknowledged.
pub fn bare(settings: &ClientSettings, brokers: &str, input: &str, output: &str, n: u64) -> anyhow::Result<Run> {
    let start = Instant::now();
    // The properties the Floe source and sink set themselves, for an equal footing.
    let consumer = common::assigned_consumer(&settings.consumer_config(brokers), input, &[])?;
    let producer = common::producer(&settings.producer_config(brokers), &[("enable.idempotence", "true")])?;
    let mut buf = Vec::with_capacity(256);
    let mut produced = 0u64;
    let mut last_record = Instant::now();
    while produced < n {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            producer.poll(Duration::ZERO);
            if last_record.elapsed() > Duration::from_secs(30) {
                bail!("the bare loop read only {produced} of {n} records of {input} (nothing new for 30 s)");
            }
            continue;
        };
        let m = m.with_context(|| format!("consuming {input}"))?;
        last_record = Instant::now();
        let event: Event = serde_json::from_slice(m.payload().unwrap_or_default())
            .with_context(|| format!("a record of {input} at offset {} is not an event", m.offset()))?;
        buf.clear();
        serde_json::to_writer(&mut buf, &enrich(event)).context("serializing")?;
        let mut record = BaseRecord::<[u8], [u8]>::to(output).payload(&buf);
        record.timestamp = m.timestamp().to_millis();
        send(&producer, record)?;
        produced += 1;
        if produced.is_multiple_of(1024) {
            // What the Floe sink does once per batch.
            producer.poll(Duration::ZERO);
        }
    }
    flush(&producer, "bare loop's")?;
    Ok(Run {
        records: producer.context().acked.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        checkpoints: None,
    })
}

/// Reference: only the consuming half of [`bare`] (read and parse `n` records).
pub fn consume_only(settings: &ClientSettings, brokers: &str, input: &str, n: u64) -> anyhow::Result<Run> {
    let start = Instant::now();
    let consumer = common::assigned_consumer(&settings.consumer_config(brokers), input, &[])?;
    let mut read = 0u64;
    let mut last_record = Instant::now();
    while read < n {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            if last_record.elapsed() > Duration::from_secs(30) {
                bail!("read only {read} of {n} records of {input} (nothing new for 30 s)");
            }
            continue;
        };
        let m = m.with_context(|| format!("consuming {input}"))?;
        last_record = Instant::now();
        let event: Event = serde_json::from_slice(m.payload().unwrap_or_default())
            .with_context(|| format!("a record of {input} at offset {} is not an event", m.offset()))?;
        std::hint::black_box(event);
        read += 1;
    }
    Ok(Run {
        records: read,
        elapsed: start.elapsed(),
        checkpoints: None,
    })
}

/// Reference: only the producing half of [`bare`] (serialize and write `n` records made in
/// memory, until all are acknowledged).
pub fn produce_only(settings: &ClientSettings, brokers: &str, output: &str, n: u64) -> anyhow::Result<Run> {
    let start = Instant::now();
    let producer = common::producer(&settings.producer_config(brokers), &[("enable.idempotence", "true")])?;
    let (mut input, mut buf) = (Vec::with_capacity(128), Vec::with_capacity(256));
    for seq in 0..n {
        common::write_event(&mut input, seq, seq);
        let event: Event = serde_json::from_slice(&input).context("parsing")?;
        buf.clear();
        serde_json::to_writer(&mut buf, &enrich(event)).context("serializing")?;
        send(&producer, BaseRecord::<[u8], [u8]>::to(output).payload(&buf))?;
        if seq % 1024 == 1023 {
            producer.poll(Duration::ZERO);
        }
    }
    flush(&producer, "produce-only")?;
    Ok(Run {
        records: producer.context().acked.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        checkpoints: None,
    })
}

/// Options of a Floe run.
pub struct FloeRun<'a> {
    /// Client settings shared with the bare loop.
    pub settings: &'a ClientSettings,
    /// Bootstrap servers.
    pub brokers: &'a str,
    /// Input topic.
    pub input: &'a str,
    /// Output topic.
    pub output: &'a str,
    /// Parallelism of the job.
    pub parallelism: usize,
    /// Milliseconds between checkpoints.
    pub checkpoint_interval_ms: u64,
}

/// A fresh checkpoint directory for run `tag` (a job finding checkpoints there would
/// resume from them).
pub fn checkpoint_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("floe-kafka-pipeline-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the Floe job `read_kafka(bounded) → map → write_kafka(at-least-once)` over `input`
/// to its end.
pub fn floe(run: &FloeRun<'_>, expected: u64) -> anyhow::Result<Run> {
    let tag = format!("{}-p{}", run.output, run.parallelism);
    let dir = checkpoint_dir(&tag);
    let env = Env::with_config(JobConfig {
        parallelism: run.parallelism,
        checkpoint_dir: Some(dir.clone()),
        checkpoint_interval_ms: run.checkpoint_interval_ms,
        state_backend: StateBackendKind::Memory,
        ..JobConfig::default()
    });
    let source = KafkaSource::builder(run.settings.consumer_config(run.brokers))
        .topic(run.input)
        .deserializer(Json::<Event>::new())
        .start(StartPosition::Earliest)
        .bounded()
        .build()
        .context("building the Kafka source")?;
    let sink = KafkaSink::builder(run.settings.producer_config(run.brokers), run.output)
        .serializer(JsonOut)
        .delivery(Delivery::AtLeastOnce)
        .build()
        .context("building the Kafka sink")?;
    let metrics = sink.metrics();
    env.read_kafka(source).map(enrich).write_kafka(sink);
    let start = Instant::now();
    let result = env.execute("kafka-pipeline").context("running the Floe job")?;
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let records = metrics.records_written();
    if records != expected || metrics.records_failed() > 0 {
        eprintln!(
            "warning: the Floe sink acknowledged {records} of {expected} records ({} failed)",
            metrics.records_failed()
        );
    }
    Ok(Run {
        records,
        elapsed,
        checkpoints: result.last_checkpoint,
    })
}
