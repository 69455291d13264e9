//! Writes a realistic stream of payment events (JSON) to a Kafka topic: the input of the
//! fraud job and its benchmarks.
//!
//! Payments come from `--users` users, `--fail-ratio` of them failing, up to
//! `--max-disorder-ms` out of order in event time, and `--attack-share` of them from card
//! testers (bursts of failing payments by one user). The stream is a pure function of its
//! seed: payment `i` is the same on every run. One in `--malformed-every` records is not a
//! valid payment (for the dead-letter path).
//!
//! ```text
//! payments-gen --brokers 127.0.0.1:9092 --topic payments --rate 100000 --count 10000000
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use floe_dsl::kafka::KafkaConfig;
use floe_jobs::generator::{LoadProgress, PaymentLoad};
use floe_jobs::payments::PaymentProfile;

#[derive(Parser, Debug)]
#[command(name = "payments-gen", about = "Writes generated payment events to a Kafka topic")]
struct Args {
    /// Kafka bootstrap servers
    #[arg(long, env = "FLOE_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// A librdkafka property for the producer, e.g. -X compression.type=lz4 (repeatable)
    #[arg(short = 'X', long = "kafka-property")]
    kafka_properties: Vec<String>,
    /// Topic to write to
    #[arg(long, default_value = "payments")]
    topic: String,
    /// Number of users
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Share of payments that fail (0..=1)
    #[arg(long, default_value_t = 0.2)]
    fail_ratio: f64,
    /// Share of payments made by card testers in bursts (0..=1)
    #[arg(long, default_value_t = 0.01)]
    attack_share: f64,
    /// Events arrive up to this much out of order in event time (ms)
    #[arg(long, default_value_t = 2_000)]
    max_disorder_ms: i64,
    /// Event-time gap between consecutive payments (ms)
    #[arg(long, default_value_t = 1)]
    gap_ms: i64,
    /// Payments per second (0: as fast as the broker takes them)
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Number of payments (0: until stopped)
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// First payment index (to continue an earlier run's stream)
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Seed of the stream
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write one malformed record after every N payments (0: none)
    #[arg(long, default_value_t = 0)]
    malformed_every: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fail_ratio),
        "--fail-ratio {} is not between 0 and 1",
        args.fail_ratio
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.attack_share),
        "--attack-share {} is not between 0 and 1",
        args.attack_share
    );
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    anyhow::ensure!(args.max_disorder_ms >= 0, "--max-disorder-ms must not be negative");
    let profile = PaymentProfile {
        users: args.users,
        fail_ratio: args.fail_ratio,
        gap_ms: args.gap_ms,
        max_disorder_ms: args.max_disorder_ms,
        seed: args.seed,
        attack_share: args.attack_share,
        ..PaymentProfile::default()
    };
    let config = KafkaConfig::new(&args.brokers)
        .with_properties(args.kafka_properties.iter().map(String::as_str))
        .map_err(anyhow::Error::msg)?;
    let load = PaymentLoad {
        profile,
        topic: args.topic.clone(),
        start: args.start,
        count: if args.count == 0 { u64::MAX } else { args.count },
        rate: args.rate,
        malformed_every: args.malformed_every,
    };
    let progress = Arc::new(LoadProgress::default());
    let watch = progress.clone();
    let started = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(5));
        let sent = watch.sent.load(Ordering::Relaxed);
        eprintln!(
            "payments-gen: {sent} payments, {:.0}/s",
            sent as f64 / started.elapsed().as_secs_f64()
        );
    });
    load.run(&config, &progress)?;
    eprintln!(
        "payments-gen: wrote {} payments ({} malformed records) to {} in {:.1}s",
        progress.sent.load(Ordering::Relaxed),
        progress.malformed.load(Ordering::Relaxed),
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
