//! The fraud demo, end to end in one command: a Kafka broker (librdkafka's in-process mock
//! cluster, or yours with `--brokers`), a generator writing payments to it, the fraud job
//! (CEP on RocksDB state, checkpoints, exactly-once alerts), and the alerts printed as they
//! are committed, with a live line of progress. Ends after `--count` payments (checking the
//! alerts against the rule applied directly to the same payments) or on Ctrl-C, and says
//! what the job read, not what was generated.
//!
//! The embedded broker keeps only the last 5 MB of each partition, deleting older records
//! whether they were read or not; so there the generator waits whenever it is more than
//! [`MOCK_MAX_AHEAD`] records ahead of what the job has read, and any `--rate` works. (A
//! record deleted unread would fail the job anyway: its Kafka source never skips silently.)
//!
//! ```text
//! fraud-demo                       # 1,000,000 payments at 50,000/s on the embedded broker
//! fraud-demo --brokers 127.0.0.1:9092 --count 0    # a real broker, until Ctrl-C
//! ```

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use floe_dsl::kafka::sink::{Delivery, KafkaSink};
use floe_dsl::kafka::{testing, KafkaConfig};
use floe_dsl::prelude::*;
use floe_jobs::fraud::{self, Alert};
use floe_jobs::generator::{LoadProgress, PaymentLoad};
use floe_jobs::payments::{Payment, PaymentProfile};
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[derive(Parser, Debug)]
#[command(
    name = "fraud-demo",
    about = "The fraud job end to end: broker, payment generator, CEP job, alerts"
)]
struct Args {
    /// A Kafka broker to use instead of the embedded one (topics are created if missing)
    #[arg(long, env = "FLOE_BROKERS")]
    brokers: Option<String>,
    /// A librdkafka property for every client, e.g. -X fetch.wait.max.ms=10 (repeatable)
    #[arg(short = 'X', long = "kafka-property")]
    kafka_properties: Vec<String>,
    /// Payments to generate (0: until Ctrl-C)
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Payments per second
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Number of users
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Share of failed payments
    #[arg(long, default_value_t = 0.2)]
    fail_ratio: f64,
    /// One malformed record after every N payments (0: none)
    #[arg(long, default_value_t = 10_000)]
    malformed_every: u64,
    /// Parallelism of the job
    #[arg(long, short = 'p', default_value_t = 2)]
    parallelism: usize,
    /// Checkpoint interval (ms)
    #[arg(long, default_value_t = 2_000)]
    checkpoint_interval_ms: u64,
    /// Where checkpoints and RocksDB state go [default: a fresh directory under the system's temp dir]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Alerts printed in full (the rest are counted)
    #[arg(long, default_value_t = 20)]
    print: usize,
    /// Serve metrics for Prometheus at http://ADDR/metrics, e.g. 127.0.0.1:9464
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Write alerts at least once (flushed at each checkpoint) instead of exactly once
    #[arg(long)]
    at_least_once: bool,
}

const PAYMENTS: &str = "payments";
const ALERTS: &str = "fraud-alerts";
const DLQ: &str = "payments-dlq";
const PARTITIONS: i32 = 4;
/// How far (in records) the generator may run ahead of the job on the embedded broker.
/// librdkafka's mock cluster keeps only the last 5 MB (or 100,000 batches) of each partition
/// and deletes older records whether they were read or not; 20,000 payments of ~130 bytes
/// are 2.6 MB, under that even if every one lands in the same partition (`--users 1`).
const MOCK_MAX_AHEAD: u64 = 20_000;
/// A progress line notes it when the job has read nothing for this long while records it
/// has not read are in the broker.
const STALL: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // The progress line and the alerts are the demo's output; logs only for trouble.
        std::env::set_var("RUST_LOG", "warn");
    }
    init_logging();
    anyhow::ensure!(args.parallelism > 0, "--parallelism must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_ratio),
        "--fail-ratio must be between 0 and 1"
    );
    anyhow::ensure!(args.users > 0, "--users must be at least 1");

    // The broker.
    let mock = match &args.brokers {
        Some(_) => None,
        None => Some(testing::mock_cluster(1)?),
    };
    let brokers = match (&args.brokers, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => unreachable!("a mock cluster is started when no broker is given"),
    };
    let kafka = KafkaConfig::new(&brokers)
        .with_properties(args.kafka_properties.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)?;
    for (topic, partitions) in [(PAYMENTS, PARTITIONS), (ALERTS, PARTITIONS), (DLQ, 1)] {
        match &mock {
            Some(m) => m
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating {topic} on the embedded broker"))?,
            None => testing::create_topic(&kafka, topic, partitions).with_context(|| format!("creating {topic}"))?,
        }
    }
    eprintln!(
        "broker: {} ({brokers}); follow the alerts from another shell with: floe tail {ALERTS} --brokers {brokers}",
        if mock.is_some() {
            "embedded mock cluster"
        } else {
            "yours"
        }
    );

    // Ctrl-C stops everything cleanly.
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;

    // The generator.
    let profile = PaymentProfile {
        users: args.users,
        fail_ratio: args.fail_ratio,
        gap_ms: 1,
        attack_share: 0.01,
        ..PaymentProfile::default()
    };
    let load = PaymentLoad {
        profile: profile.clone(),
        topic: PAYMENTS.into(),
        start: 0,
        count: if args.count == 0 { u64::MAX } else { args.count },
        rate: args.rate,
        malformed_every: args.malformed_every,
    };
    let progress = Arc::new(LoadProgress::default());
    let source = fraud::payments_source(kafka.clone(), PAYMENTS, "floe-fraud-demo").build()?;
    let read = source.records_read();
    let dead_letters = source.dead_letter_counter();
    if mock.is_some() {
        progress.stay_ahead_of(read.clone(), MOCK_MAX_AHEAD);
    }
    let generator = {
        let (kafka, progress) = (kafka.clone(), progress.clone());
        std::thread::spawn(move || load.run(&kafka, &progress))
    };

    // The job.
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("floe-fraud-demo-{}", std::process::id())),
    };
    let options = EnvOptions {
        parallelism: Some(args.parallelism),
        checkpoint_dir: Some(work.join("checkpoints")),
        checkpoint_interval_ms: Some(args.checkpoint_interval_ms),
        state_dir: Some(work.join("state")),
        metrics_addr: args.metrics_addr.clone(),
        ..EnvOptions::default()
    };
    let env = Env::from_options(&options)?;
    let payments = env.read_kafka(source);
    payments
        .dead_letters()
        .write_kafka(KafkaSink::dead_letters(kafka.clone(), DLQ).build()?);
    let matches = fraud::matches(&payments);
    let cep = matches.metrics();
    let delivery = if args.at_least_once {
        Delivery::AtLeastOnce
    } else {
        Delivery::ExactlyOnce
    };
    matches
        .select(|m| Alert::of(m.get("fails")))
        .write_kafka(fraud::alerts_sink(kafka.clone(), ALERTS, delivery).build()?);
    let job = env.execute_async("fraud-demo")?;
    let control = job.control();

    // The alerts, as they are committed.
    let alerts = Arc::new(Mutex::new(Vec::<Alert>::new()));
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let printed = Arc::new(AtomicU64::new(0));
    let stop_printer = Arc::new(AtomicBool::new(false));
    let printer = {
        let (kafka, alerts, printed, stop) = (kafka.clone(), alerts.clone(), printed.clone(), stop_printer.clone());
        let watch = Latency {
            progress: progress.clone(),
            rate: args.rate,
            histogram: latency.clone(),
        };
        let limit = args.print;
        std::thread::spawn(move || print_alerts(&kafka, limit, &alerts, &printed, &stop, &watch))
    };

    // Progress, until the load is written and read, or Ctrl-C.
    let started = Instant::now();
    let (mut last_id, mut last_at) = (0u64, None::<Instant>);
    let (mut last_read, mut read_at, mut stall_noted) = (0u64, Instant::now(), false);
    let mut ticks = 0u64;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        ticks += 1;
        let id = job.last_checkpoint();
        if id != last_id {
            (last_id, last_at) = (id, Some(Instant::now()));
        }
        let (written, now_read) = (progress.written(), read.get());
        let done = generator.is_finished() && now_read >= written;
        if control.is_cancelled() {
            // A task failed: the job is ending; its error is reported below.
            break;
        }
        if now_read != last_read {
            (last_read, read_at, stall_noted) = (now_read, Instant::now(), false);
        } else if now_read < written && read_at.elapsed() >= STALL && !stall_noted {
            stall_noted = true;
            eprintln!(
                "\nfraud-demo: the job has read nothing for {}s while {} records written are unread: is the broker reachable?",
                STALL.as_secs(),
                written - now_read
            );
        }
        if ticks.is_multiple_of(4) || done {
            let secs = started.elapsed().as_secs_f64();
            let checkpoint = match last_at {
                Some(at) => format!("checkpoint {last_id} ({:.1}s ago)", at.elapsed().as_secs_f64()),
                None => "no checkpoint yet".into(),
            };
            eprint!(
                "\r\x1b[2K{:>9} payments read ({:>7.0}/s) · {} alerts · {} dead letters · {checkpoint}",
                now_read,
                now_read as f64 / secs,
                alerts.lock().map(|a| a.len()).unwrap_or(0),
                dead_letters.get(),
            );
            let _ = std::io::stderr().flush();
        }
        if done || interrupted.load(Ordering::Relaxed) {
            break;
        }
    }
    eprintln!();
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    progress.stop.store(true, Ordering::Relaxed);
    job.stop();
    let result = job.join();
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    // The job committed its last alerts when it stopped: read up to them.
    stop_printer.store(true, Ordering::Relaxed);
    printer
        .join()
        .map_err(|_| anyhow::anyhow!("the alert printer panicked"))??;
    let result = result.context("the fraud job failed")?;

    // What the job read and did, not what the generator wrote.
    let alerts = std::mem::take(&mut *alerts.lock().map_err(|_| anyhow::anyhow!("alert list poisoned"))?);
    let (generated, written, dead) = (
        progress.sent.load(Ordering::Relaxed),
        progress.written(),
        dead_letters.get(),
    );
    let payments_read = read.get().saturating_sub(dead);
    println!(
        "fraud-demo: the job read {payments_read} payments and {dead} malformed records (dead letters) of {written} records written, \
         in {:.1}s; {} alerts committed ({} shown), {} late events, last checkpoint {:?}",
        result.duration.as_secs_f64(),
        alerts.len(),
        printed.load(Ordering::Relaxed),
        cep.late.get(),
        result.last_checkpoint,
    );
    if read.get() < written {
        println!(
            "fraud-demo: {} records written were not read by the job{}",
            written - read.get(),
            if was_interrupted { " (stopped by Ctrl-C)" } else { "" }
        );
    }
    if let Ok(h) = latency.lock() {
        if !h.is_empty() {
            println!(
                "alert latency (last payment due → alert read): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms over {} alerts",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                h.len()
            );
        }
    }
    if was_interrupted {
        println!("stopped by Ctrl-C; checkpoints and state are in {}", work.display());
        return Ok(());
    }
    // Check against the rule applied directly to the same payments.
    let all: Vec<Payment> = (0..generated).map(|i| profile.payment(i)).collect();
    let expected: BTreeSet<Vec<u64>> = fraud::oracle(&all).into_iter().map(|a| a.event_ids).collect();
    let got: BTreeSet<Vec<u64>> = alerts.into_iter().map(|a| a.event_ids).collect();
    let _ = std::fs::remove_dir_all(&work);
    if got == expected {
        println!("✓ the alerts are exactly those of the rule applied directly to the same payments");
        Ok(())
    } else {
        anyhow::bail!(
            "the alerts differ from the rule applied directly: {} expected, {} raised, {} missing, {} unexpected",
            expected.len(),
            got.len(),
            expected.difference(&got).count(),
            got.difference(&expected).count()
        )
    }
}

/// What an alert's latency is measured from: the time its last payment was due to be sent.
struct Latency {
    progress: Arc<LoadProgress>,
    rate: u64,
    histogram: Arc<Mutex<Histogram<u64>>>,
}

impl Latency {
    /// Records the latency of `alert`, read now (ms), if the load is paced.
    fn record(&self, alert: &Alert) {
        let (Some(started), Some(last)) = (self.progress.started.get(), alert.event_ids.iter().max()) else {
            return;
        };
        if self.rate == 0 {
            return;
        }
        let due = *started + Duration::from_secs_f64(*last as f64 / self.rate as f64);
        let ms = Instant::now().saturating_duration_since(due).as_millis() as u64;
        if let Ok(mut h) = self.histogram.lock() {
            let _ = h.record(ms);
        }
    }
}

/// Reads the alerts topic from the beginning, printing the first `limit` alerts and keeping
/// all of them, until `stop` is set and the topic is read to its end.
fn print_alerts(
    kafka: &KafkaConfig,
    limit: usize,
    alerts: &Mutex<Vec<Alert>>,
    printed: &AtomicU64,
    stop: &AtomicBool,
    latency: &Latency,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka
        .client_config(&[("group.id", "fraud-demo-printer"), ("enable.auto.commit", "false")])
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(ALERTS, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut idle_after_stop = 0;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_after_stop = 0;
                let Some(alert) = m.payload().and_then(|p| serde_json::from_slice::<Alert>(p).ok()) else {
                    continue;
                };
                latency.record(&alert);
                let mut all = alerts.lock().map_err(|_| anyhow::anyhow!("alert list poisoned"))?;
                if all.len() < limit {
                    eprint!("\r\x1b[2K");
                    println!(
                        "ALERT user {:>6}: {} failed payments in {:>5.1}s, total {:>9.2} (events {:?})",
                        alert.user_id,
                        alert.event_ids.len(),
                        (alert.last_ts - alert.first_ts) as f64 / 1_000.0,
                        alert.total_amount,
                        alert.event_ids
                    );
                    printed.fetch_add(1, Ordering::Relaxed);
                }
                all.push(alert);
            }
            Some(Err(e)) => tracing::debug!(error = %e, "reading alerts"),
            None if stop.load(Ordering::Relaxed) => {
                // Nothing for half a second after the job stopped: the topic is read.
                idle_after_stop += 1;
                if idle_after_stop >= 5 {
                    return Ok(());
                }
            }
            None => {}
        }
    }
}
