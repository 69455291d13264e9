//! End-to-end latency of a running Floe job: a paced producer stamps each input record with
//! its send time, the job maps it to the output topic, and a consumer of that topic records
//! receive time minus send time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use floe_checkpoints::StateBackendKind;
use floe_dsl::kafka::sink::{Delivery, Json as JsonOut, KafkaSink};
use floe_dsl::kafka::source::{Json, KafkaSource, StartPosition};
use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use hdrhistogram::Histogram;
use rdkafka::producer::BaseRecord;
use rdkafka::Message as _;

use super::common::{self, enrich, now_ns, ClientSettings, Event};

/// The send time in an input or output record.
#[derive(serde::Deserialize)]
struct Stamp {
    ts: u64,
}
use super::throughput::checkpoint_dir;

/// One latency run's parameters.
pub struct LatencyRun<'a> {
    /// Client settings of the input producer, the job and the output reader.
    pub settings: &'a ClientSettings,
    /// Bootstrap servers.
    pub brokers: &'a str,
    /// Input topic (exists).
    pub input: &'a str,
    /// Output topic (exists).
    pub output: &'a str,
    /// Partitions of the input topic.
    pub partitions: i32,
    /// What moves the records from the input to the output topic.
    pub pipeline: Pipeline,
    /// Events per second to produce.
    pub rate: u64,
    /// Measured time.
    pub duration: Duration,
    /// Time before the measured time (not recorded).
    pub warmup: Duration,
    /// Parallelism of the job.
    pub parallelism: usize,
    /// Milliseconds between checkpoints.
    pub checkpoint_interval_ms: u64,
}

/// What moves the records from the input to the output topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Nothing: the reader reads the input topic (the broker's and the clients' share).
    NoJob,
    /// A bare rdkafka consumer–producer loop on one thread (the same work as the job).
    BareRelay,
    /// The Floe job with this sink delivery.
    Floe(Delivery),
}

/// What a latency run measured.
pub struct Latency {
    /// Receive minus send time of the records sent in the measured time, in µs.
    pub histogram: Histogram<u64>,
    /// Records sent in the measured time, per second.
    pub achieved_rate: f64,
    /// Records sent in all (warm-up included).
    pub sent: u64,
    /// Records received in all (duplicates included).
    pub received: u64,
    /// Checkpoints the job completed.
    pub checkpoints: u64,
}

/// Sends `rate` records a second in bursts every millisecond, for `warmup + duration`;
/// each carries its send time. Each burst goes to one partition, the next burst to the next
/// partition: one producer batch a millisecond, as few as the rate allows (tansu's cost is
/// per batch). Returns (records sent, records sent in the measured time).
fn produce(run: &LatencyRun<'_>, config: floe_dsl::kafka::KafkaConfig) -> anyhow::Result<(u64, u64)> {
    let producer = common::producer(&config, &[])?;
    let mut buf = Vec::with_capacity(128);
    let start = Instant::now();
    let end = run.warmup + run.duration;
    let (mut sent, mut measured) = (0u64, 0u64);
    let p = run.partitions.max(1) as u64;
    let mut burst = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= end {
            break;
        }
        let due = (elapsed.as_secs_f64() * run.rate as f64) as u64;
        let in_window = elapsed >= run.warmup;
        let partition = (burst % p) as i32;
        burst += 1;
        while sent < due {
            common::write_event(&mut buf, sent, now_ns());
            common::send(&producer, BaseRecord::to(run.input).partition(partition).payload(&buf))?;
            sent += 1;
            if in_window {
                measured += 1;
            }
        }
        producer.poll(Duration::ZERO);
        let next_ms = Duration::from_millis(elapsed.as_millis() as u64 + 1);
        if let Some(wait) = next_ms.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
    common::flush(&producer, "input")?;
    Ok((sent, measured))
}

/// Reads the output topic until `stop`, recording the latency of records sent at or after
/// `from_ns` and before `until_ns`.
fn consume(
    config: floe_dsl::kafka::KafkaConfig,
    output: String,
    window: Arc<(AtomicU64, AtomicU64)>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Histogram<u64>> {
    let consumer = common::assigned_consumer(&config, &output, &[])?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("creating a histogram")?;
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m.with_context(|| format!("reading {output}"))?;
        let now = now_ns();
        let out: Stamp = serde_json::from_slice(m.payload().unwrap_or_default())
            .with_context(|| format!("a record of {output} is not JSON with a `ts`"))?;
        received.fetch_add(1, Ordering::Relaxed);
        let (from, until) = (window.0.load(Ordering::Relaxed), window.1.load(Ordering::Relaxed));
        if out.ts >= from && out.ts < until {
            histogram
                .record((now.saturating_sub(out.ts) / 1_000).max(1))
                .context("recording a latency")?;
        }
    }
    Ok(histogram)
}

/// Runs the job and the two client threads; see the module docs.
pub fn run(run: &LatencyRun<'_>) -> anyhow::Result<Latency> {
    let tag = format!("{}-lat", run.output);
    let dir = checkpoint_dir(&tag);
    let env = match run.pipeline {
        Pipeline::Floe(delivery) => Some(job(run, delivery, &dir)?),
        _ => None,
    };

    // The measured window, in ns since the epoch: set once the producer starts.
    let window = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)));
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let read = if run.pipeline == Pipeline::NoJob {
            run.input
        } else {
            run.output
        };
        let (config, output) = (run.settings.consumer_config(run.brokers), read.to_string());
        let (window, received, stop) = (window.clone(), received.clone(), stop.clone());
        thread::Builder::new()
            .name("output-reader".into())
            .spawn(move || consume(config, output, window, received, stop))
            .context("starting the output reader")?
    };
    let job = match &env {
        Some(env) => Some(
            env.execute_async("kafka-pipeline-latency")
                .context("starting the Floe job")?,
        ),
        None => None,
    };
    let relay_stop = Arc::new(AtomicBool::new(false));
    let relay = match run.pipeline {
        Pipeline::BareRelay => {
            let (settings, brokers) = (run.settings.clone(), run.brokers.to_string());
            let (input, output, stop) = (run.input.to_string(), run.output.to_string(), relay_stop.clone());
            Some(
                thread::Builder::new()
                    .name("bare-relay".into())
                    .spawn(move || relay(&settings, &brokers, &input, &output, &stop))
                    .context("starting the bare relay")?,
            )
        }
        _ => None,
    };

    let start = now_ns();
    window.0.store(start + run.warmup.as_nanos() as u64, Ordering::Relaxed);
    window
        .1
        .store(start + (run.warmup + run.duration).as_nanos() as u64, Ordering::Relaxed);
    let produced = produce(run, run.settings.producer_config(run.brokers));
    let sent = produced.as_ref().map_or(0, |p| p.0);
    // Let the job deliver what was sent (exactly-once: up to a checkpoint interval later).
    let deadline = Instant::now() + Duration::from_millis(3 * run.checkpoint_interval_ms) + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline && produced.is_ok() {
        thread::sleep(Duration::from_millis(20));
    }
    let result = job.map(|job| {
        job.stop();
        job.join()
    });
    relay_stop.store(true, Ordering::Relaxed);
    let relayed = relay.map(|r| r.join().map_err(|_| anyhow!("the bare relay panicked")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline && produced.is_ok() {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let histogram = reader.join().map_err(|_| anyhow!("the output reader panicked"))??;
    let _ = std::fs::remove_dir_all(&dir);
    let (sent, measured) = produced?;
    if let Some(r) = relayed {
        r??;
    }
    let checkpoints = match result {
        Some(r) => r.context("the Floe job failed")?.last_checkpoint.unwrap_or(0),
        None => 0,
    };
    Ok(Latency {
        histogram,
        achieved_rate: measured as f64 / run.duration.as_secs_f64(),
        sent,
        received: received.load(Ordering::Relaxed),
        checkpoints,
    })
}

/// The bare loop of the throughput comparison, unbounded: until `stop`.
fn relay(settings: &ClientSettings, brokers: &str, input: &str, output: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    let consumer = common::assigned_consumer(&settings.consumer_config(brokers), input, &[])?;
    let producer = common::producer(&settings.producer_config(brokers), &[("enable.idempotence", "true")])?;
    let mut buf = Vec::with_capacity(256);
    let mut produced = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(10)) else {
            producer.poll(Duration::ZERO);
            continue;
        };
        let m = m.with_context(|| format!("consuming {input}"))?;
        let event: Event = serde_json::from_slice(m.payload().unwrap_or_default())
            .with_context(|| format!("a record of {input} at offset {} is not an event", m.offset()))?;
        buf.clear();
        serde_json::to_writer(&mut buf, &enrich(event)).context("serializing")?;
        let mut record = BaseRecord::<[u8], [u8]>::to(output).payload(&buf);
        record.timestamp = m.timestamp().to_millis();
        common::send(&producer, record)?;
        produced += 1;
        if produced.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    common::flush(&producer, "bare relay's")
}

/// The job `read_kafka → map → write_kafka(delivery)`, checkpointing into `dir`.
fn job(run: &LatencyRun<'_>, delivery: Delivery, dir: &std::path::Path) -> anyhow::Result<Env> {
    let env = Env::with_config(JobConfig {
        parallelism: run.parallelism,
        checkpoint_dir: Some(dir.to_path_buf()),
        checkpoint_interval_ms: run.checkpoint_interval_ms,
        state_backend: StateBackendKind::Memory,
        ..JobConfig::default()
    });
    let source = KafkaSource::builder(run.settings.consumer_config(run.brokers))
        .topic(run.input)
        .deserializer(Json::<Event>::new())
        .start(StartPosition::Earliest)
        .build()
        .context("building the Kafka source")?;
    let sink = KafkaSink::builder(run.settings.producer_config(run.brokers), run.output)
        .serializer(JsonOut)
        .delivery(delivery)
        .transactional_id_prefix(format!("floe-kafka-pipeline-{}-{}", std::process::id(), run.output))
        .build()
        .context("building the Kafka sink")?;
    env.read_kafka(source).map(enrich).write_kafka(sink);
    Ok(env)
}
