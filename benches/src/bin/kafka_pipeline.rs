//! Kafka to Kafka through Floe, against a real broker: throughput of a Floe job next to a
//! bare rdkafka loop doing the same work, and end-to-end latency at a fixed rate with
//! at-least-once and exactly-once delivery.
//!
//! ```text
//! cargo run --release -p floe-benches --bin kafka-pipeline -- --records 2000000 --parallelism 1,2
//! cargo run --release -p floe-benches --bin kafka-pipeline -- --only latency --rates 100000,10000
//! ```
//!
//! The broker is a tansu process started on a free 127.0.0.1 port (see
//! `floe_operators::kafka::testing::TestBroker`), or the one `--brokers` names.
//!
//! **Throughput.** `--records` JSON records (`{"key":"k123","seq":N,"ts":..,"amount":..,
//! "tag":".."}`, about 80 bytes) are written to a 4-partition input topic (not timed). Then,
//! in this one run, the same work — read, parse the JSON, add one field, write JSON to an
//! output topic — is timed (a) as one thread with an assigned `BaseConsumer` and a
//! `BaseProducer`, until every record is acknowledged, and (b) as a Floe job
//! (`read_kafka(bounded) → map → write_kafka(at-least-once)`, checkpoints on) from start to
//! end. Both use the same producer and consumer properties. The Floe output is counted by
//! reading it back (not timed).
//!
//! **Latency.** A producer thread writes `--rate` records a second (a burst every
//! millisecond), each carrying its send time; an unbounded Floe job maps them to the output
//! topic; a consumer thread records receive minus send time in an HDR histogram, for the
//! records sent after the warm-up. Once with at-least-once delivery, once with exactly-once
//! (whose output becomes visible when the checkpoint's transaction commits).

#[path = "kafka_pipeline/common.rs"]
mod common;
#[path = "kafka_pipeline/latency.rs"]
mod latency;
#[path = "kafka_pipeline/throughput.rs"]
mod throughput;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use floe_dsl::kafka::sink::Delivery;
use floe_dsl::kafka::testing::{create_topic, TestBroker};
use floe_dsl::kafka::KafkaConfig;

use common::{parse_properties, set, ClientSettings};
use latency::Pipeline;

/// Which measurements to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Bare rdkafka loop against the Floe job
    Throughput,
    /// End-to-end latency at fixed rates
    Latency,
}

/// A delivery guarantee of the latency runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Guarantee {
    /// No job: the reader reads the input topic (what the broker and clients cost)
    NoJob,
    /// A bare rdkafka consumer-producer loop instead of the job (same work, same settings)
    BareRelay,
    /// Flushed at every checkpoint barrier
    AtLeastOnce,
    /// Committed in a Kafka transaction when the checkpoint completes
    ExactlyOnce,
}

#[derive(Parser, Debug)]
#[command(
    name = "kafka-pipeline",
    about = "Kafka-to-Kafka throughput (Floe vs a bare rdkafka loop) and latency"
)]
struct Args {
    /// Use these brokers instead of starting a tansu broker
    #[arg(long)]
    brokers: Option<String>,
    /// Run only one of the two measurements
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Partitions of the input topics
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Milliseconds between checkpoints of the Floe jobs
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Producer property for both sides (bare producer and Floe sink), key=value, repeatable;
    /// wins over the defaults of either measurement
    #[arg(long = "producer-property", short = 'P')]
    producer_properties: Vec<String>,
    /// Consumer property for both sides (bare consumer and Floe source), key=value, repeatable
    #[arg(long = "consumer-property", short = 'C')]
    consumer_properties: Vec<String>,

    /// Throughput: records in the input topic
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Throughput: parallelisms of the Floe job, comma separated
    #[arg(long, value_delimiter = ',', default_value = "1")]
    parallelism: Vec<usize>,
    /// Throughput: how many times to measure each configuration (alternating bare and Floe)
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Throughput: also time the consuming half and the producing half of the bare loop alone
    #[arg(long)]
    components: bool,
    /// Throughput: producer `linger.ms` on both sides
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,

    /// Latency: events per second, comma separated
    #[arg(long, value_delimiter = ',', default_value = "100000,10000")]
    rates: Vec<u64>,
    /// Latency: delivery guarantees, comma separated
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "no-job,bare-relay,at-least-once,exactly-once"
    )]
    deliveries: Vec<Guarantee>,
    /// Latency: measured seconds per run
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Latency: seconds of warm-up before the measured time
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// Latency: parallelism of the Floe job
    #[arg(long, default_value_t = 1)]
    latency_parallelism: usize,
    /// Latency: producer `linger.ms` (input producer and Floe sink)
    #[arg(long, default_value_t = 1)]
    latency_linger_ms: u64,
    /// Latency: consumer `fetch.wait.max.ms` (Floe source and output reader)
    #[arg(long, default_value_t = 5)]
    latency_fetch_wait_ms: u64,
}

/// A broker: the one given, or a tansu process of our own (stopped on drop).
struct Broker {
    brokers: String,
    _own: Option<TestBroker>,
}

impl Broker {
    fn new(given: Option<&str>) -> anyhow::Result<Broker> {
        match given {
            Some(b) => Ok(Broker {
                brokers: b.to_string(),
                _own: None,
            }),
            None => {
                let broker =
                    TestBroker::start().context("starting the tansu test broker (installed by scripts/tansu.sh)")?;
                Ok(Broker {
                    brokers: broker.brokers(),
                    _own: Some(broker),
                })
            }
        }
    }

    fn topic(&self, name: &str, partitions: i32) -> anyhow::Result<String> {
        // Unique names, so that runs against a long-lived broker do not mix.
        let name = format!("{name}-{}", std::process::id());
        create_topic(&KafkaConfig::new(&self.brokers), &name, partitions)
            .with_context(|| format!("creating topic {name}"))?;
        Ok(name)
    }
}

fn user_settings(args: &Args, mut s: ClientSettings) -> anyhow::Result<ClientSettings> {
    for (k, v) in parse_properties(&args.producer_properties)? {
        set(&mut s.producer, &k, &v);
    }
    for (k, v) in parse_properties(&args.consumer_properties)? {
        set(&mut s.consumer, &k, &v);
    }
    Ok(s)
}

fn props(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn throughput(args: &Args) -> anyhow::Result<()> {
    let settings = user_settings(
        args,
        ClientSettings {
            producer: props(&[
                ("linger.ms", args.linger_ms.to_string()),
                ("batch.num.messages", "10000".into()),
                ("batch.size", "1000000".into()),
                ("queue.buffering.max.messages", "100000".into()),
                ("compression.type", "none".into()),
                ("acks", "all".into()),
            ]),
            consumer: props(&[
                ("fetch.min.bytes", "1".into()),
                ("fetch.wait.max.ms", "100".into()),
                ("fetch.max.bytes", "52428800".into()),
                ("max.partition.fetch.bytes", "1048576".into()),
                ("queued.min.messages", "100000".into()),
                // librdkafka's default (1000 ms) pauses fetching for a second whenever the
                // local queue is over `queued.min.messages`: about 200K records/s at most
                // per consumer on this machine, whatever else is tuned.
                ("fetch.queue.backoff.ms", "10".into()),
            ]),
        },
    )?;
    let broker = Broker::new(args.brokers.as_deref())?;
    let n = args.records;
    anyhow::ensure!(n >= args.partitions as u64, "--records must be at least --partitions");
    let input = broker.topic("kp-input", args.partitions)?;
    println!(
        "kafka pipeline throughput: {n} records, {} partitions, broker {}{}",
        args.partitions,
        broker.brokers,
        if args.brokers.is_none() {
            " (tansu, in memory)"
        } else {
            ""
        }
    );
    println!("  {}", settings.describe());
    let t = std::time::Instant::now();
    common::preload(&broker.brokers, &input, n, args.partitions)?;
    println!("  input written in {:.1} s (not timed)", t.elapsed().as_secs_f64());

    println!(
        "  {:<50} {:>10} {:>9} {:>14} {:>12}",
        "run", "records", "seconds", "events/s", "Floe / bare"
    );
    let row = |name: String, r: &throughput::Run| {
        println!(
            "  {:<50} {:>10} {:>9.2} {:>14.0}",
            name,
            r.records,
            r.elapsed.as_secs_f64(),
            r.rate()
        )
    };
    if args.components {
        let r = throughput::consume_only(&settings, &broker.brokers, &input, n)?;
        row("bare consume + parse only".into(), &r);
        let out = broker.topic("kp-out-produce-only", args.partitions)?;
        let r = throughput::produce_only(&settings, &broker.brokers, &out, n)?;
        row("bare serialize + produce only".into(), &r);
    }
    for round in 0..args.repeat {
        let out = broker.topic(&format!("kp-out-bare-{round}"), args.partitions)?;
        let bare = throughput::bare(&settings, &broker.brokers, &input, &out, n)?;
        row(format!("bare rdkafka loop (round {})", round + 1), &bare);
        for &p in &args.parallelism {
            let out = broker.topic(&format!("kp-out-floe-p{p}-{round}"), args.partitions)?;
            let run = throughput::FloeRun {
                settings: &settings,
                brokers: &broker.brokers,
                input: &input,
                output: &out,
                parallelism: p,
                checkpoint_interval_ms: args.checkpoint_interval_ms,
            };
            let floe = throughput::floe(&run, n)?;
            println!(
                "  {:<50} {:>10} {:>9.2} {:>14.0} {:>12.2}",
                format!(
                    "Floe p={p}, at-least-once, chk {} ms (round {})",
                    args.checkpoint_interval_ms,
                    round + 1
                ),
                floe.records,
                floe.elapsed.as_secs_f64(),
                floe.rate(),
                floe.rate() / bare.rate()
            );
            let count = common::count_output(&broker.brokers, &out, n)?;
            let ok = count.distinct == n;
            println!(
                "      output check: {} records read, {} distinct of {n} {}; {} checkpoints",
                count.total,
                count.distinct,
                if ok { "(ok)" } else { "(MISSING RECORDS)" },
                floe.checkpoints.unwrap_or(0)
            );
        }
    }
    Ok(())
}

fn latency(args: &Args) -> anyhow::Result<()> {
    let settings = user_settings(
        args,
        ClientSettings {
            producer: props(&[
                ("linger.ms", args.latency_linger_ms.to_string()),
                ("compression.type", "none".into()),
                ("acks", "all".into()),
            ]),
            consumer: props(&[
                ("fetch.min.bytes", "1".into()),
                ("fetch.wait.max.ms", args.latency_fetch_wait_ms.to_string()),
            ]),
        },
    )?;
    println!(
        "kafka pipeline latency: Floe p={}, checkpoints every {} ms, {} s measured after {} s of warm-up",
        args.latency_parallelism, args.checkpoint_interval_ms, args.duration_s, args.warmup_s
    );
    println!("  {}", settings.describe());
    println!(
        "  {:<15} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>16}",
        "delivery",
        "rate",
        "achieved/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "mean ms",
        "recv/sent, chk"
    );
    for &rate in &args.rates {
        for &g in &args.deliveries {
            // A broker per run: tansu keeps everything in memory.
            let broker = Broker::new(args.brokers.as_deref())?;
            let name = match g {
                Guarantee::NoJob => "direct",
                Guarantee::BareRelay => "bare",
                Guarantee::AtLeastOnce => "alo",
                Guarantee::ExactlyOnce => "eos",
            };
            let input = broker.topic(&format!("kp-lat-in-{name}-{rate}"), args.partitions)?;
            let output = broker.topic(&format!("kp-lat-out-{name}-{rate}"), args.partitions)?;
            let run = latency::LatencyRun {
                settings: &settings,
                brokers: &broker.brokers,
                input: &input,
                output: &output,
                partitions: args.partitions,
                pipeline: match g {
                    Guarantee::NoJob => Pipeline::NoJob,
                    Guarantee::BareRelay => Pipeline::BareRelay,
                    Guarantee::AtLeastOnce => Pipeline::Floe(Delivery::AtLeastOnce),
                    Guarantee::ExactlyOnce => Pipeline::Floe(Delivery::ExactlyOnce),
                },
                rate,
                duration: Duration::from_secs(args.duration_s),
                warmup: Duration::from_secs(args.warmup_s),
                parallelism: args.latency_parallelism,
                checkpoint_interval_ms: args.checkpoint_interval_ms,
            };
            let l = latency::run(&run)?;
            let h = &l.histogram;
            let ms = |us: u64| us as f64 / 1000.0;
            println!(
                "  {:<15} {:>9} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>16}",
                name_of(g),
                rate,
                l.achieved_rate,
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
                h.mean() / 1000.0,
                format!("{}/{}, {}", l.received, l.sent, l.checkpoints)
            );
        }
    }
    Ok(())
}

fn name_of(g: Guarantee) -> &'static str {
    match g {
        Guarantee::NoJob => "no job",
        Guarantee::BareRelay => "bare relay",
        Guarantee::AtLeastOnce => "at-least-once",
        Guarantee::ExactlyOnce => "exactly-once",
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // Before any thread starts: only warnings, so that the tables stay readable.
        std::env::set_var("RUST_LOG", "warn");
    }
    floe_dsl::init_logging();
    common::epoch();
    if args.only != Some(Only::Latency) {
        throughput(&args)?;
    }
    if args.only != Some(Only::Throughput) {
        latency(&args)?;
    }
    Ok(())
}
