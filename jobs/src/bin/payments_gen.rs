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

use std::time::{Duration, Instant};

use clap::Parser;
use floe_dsl::kafka::KafkaConfig;
use floe_jobs::payments::PaymentProfile;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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
    let producer: BaseProducer = config
        .client_config(&[("linger.ms", "5"), ("queue.buffering.max.messages", "1000000")])
        .create()?;
    let started = Instant::now();
    let mut payload = Vec::with_capacity(160);
    let mut key = String::with_capacity(16);
    let end = if args.count == 0 {
        u64::MAX
    } else {
        args.start.saturating_add(args.count)
    };
    let mut sent = 0u64;
    for i in args.start..end {
        let p = profile.payment(i);
        payload.clear();
        serde_json::to_writer(&mut payload, &p)?;
        key.clear();
        use std::fmt::Write as _;
        let _ = write!(key, "{}", p.user_id);
        send(&producer, &args.topic, &key, &payload)?;
        if args.malformed_every > 0 && i % args.malformed_every == args.malformed_every - 1 {
            let bad = format!("{{\"user_id\":\"{}\",\"status\":\"MAYBE\"}}", p.user_id);
            send(&producer, &args.topic, &key, bad.as_bytes())?;
        }
        sent += 1;
        if args.rate > 0 && sent.is_multiple_of(100) {
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                producer.poll(wait);
            }
        }
        if sent.is_multiple_of(1_000_000) {
            eprintln!(
                "payments-gen: {sent} payments, {:.0}/s",
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!(
        "payments-gen: wrote {sent} payments to {} in {:.1}s",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sends one record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}
