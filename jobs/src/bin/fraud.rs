//! The flagship job: five failed payments by one user within 60 seconds raise an alert.
//!
//! Reads payment events (JSON: `event_id`, `user_id`, `status` OK/FAIL, `amount`, `ts` in
//! epoch ms) from a Kafka topic, with watermarks 2 s behind the largest `ts` per partition;
//! per user, five FAIL payments whose first and last timestamps differ by less than 60 s
//! raise one alert (see `floe_jobs::fraud`), written exactly once (JSON, keyed by user) to
//! the alerts topic. Payments that are not valid JSON payments go to the dead-letter topic.
//!
//! ```text
//! fraud [run] --brokers 127.0.0.1:9092 --input payments --alerts fraud-alerts \
//!     --checkpoint-dir chk/ --checkpoint-interval-ms 10000
//! ```

use std::time::Duration;

use clap::Parser;
use floe_dsl::kafka::sink::KafkaSink;
use floe_dsl::prelude::*;
use floe_jobs::fraud;
use floe_jobs::kafka_args::{print_summary, KafkaArgs};

#[derive(Parser, Debug)]
#[command(
    name = "fraud",
    about = "Five failed payments by one user within 60 s of event time raise an alert"
)]
struct Args {
    #[command(flatten)]
    floe: EnvOptions,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Topic of payment events
    #[arg(long, default_value = "payments")]
    input: String,
    /// Topic to write alerts to
    #[arg(long, default_value = "fraud-alerts")]
    alerts: String,
    /// Topic for records that are not valid payments
    #[arg(long, default_value = "payments-dlq")]
    dead_letters: String,
    /// Consumer group the offsets of completed checkpoints are committed to
    #[arg(long, default_value = "floe-fraud")]
    group: String,
    /// How far behind the largest event time the watermark stays (ms)
    #[arg(long, default_value_t = 2_000)]
    out_of_orderness_ms: u64,
    /// A partition without records for this long does not hold the watermark back (ms)
    #[arg(long, default_value_t = 10_000)]
    idle_timeout_ms: u64,
    /// Stop at the end of the input as it is when the job starts (instead of following it)
    #[arg(long)]
    bounded: bool,
}

fn main() -> anyhow::Result<()> {
    // `fraud submit ...`, `fraud graph`, `fraud worker` (for task managers), or a run here.
    let args = Args::parse_from(floe_dsl::job::args());
    init_logging();
    let env = Env::from_options(&args.floe)?;
    let kafka = args.kafka.config()?;
    let delivery = args.kafka.sink_delivery();
    anyhow::ensure!(args.idle_timeout_ms > 0, "--idle-timeout-ms must be positive");
    let mut source = fraud::payments_source(kafka.clone(), &args.input, &args.group)
        .max_out_of_orderness(Duration::from_millis(args.out_of_orderness_ms))
        .idle_timeout(Duration::from_millis(args.idle_timeout_ms));
    if args.bounded {
        source = source.bounded();
    }
    let payments = env.read_kafka(source.build()?);
    payments.dead_letters().write_kafka(
        KafkaSink::dead_letters(kafka.clone(), &args.dead_letters)
            .delivery(delivery)
            .build()?,
    );
    let alerts = fraud::detect(&payments);
    alerts.write_kafka(fraud::alerts_sink(kafka, &args.alerts, delivery).build()?);
    let result = env.execute("fraud")?;
    print_summary("fraud", &result);
    Ok(())
}
