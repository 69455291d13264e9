//! Command-line options the Kafka jobs share: where the brokers are, librdkafka properties,
//! and the delivery guarantee of what the job writes.

use clap::{Args, ValueEnum};
use floe_dsl::kafka::dead_letter::TRUNCATED_METRIC;
use floe_dsl::kafka::sink::Delivery;
use floe_dsl::kafka::source::{RECORDS_LOST_METRIC, RECORDS_READ_METRIC};
use floe_dsl::kafka::{KafkaConfig, DEAD_LETTERS_METRIC};
use floe_dsl::metrics::Registry;
use floe_dsl::prelude::JobResult;

/// How a job's output (and its dead letters) is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Guarantee {
    /// Fire and forget
    None,
    /// Flushed at every checkpoint: nothing lost, duplicates after a crash
    AtLeastOnce,
    /// Kafka transactions committed with each checkpoint
    ExactlyOnce,
}

/// `--brokers`, `-X key=value` and `--delivery`.
///
/// ```
/// use clap::Parser;
/// use floe_jobs::kafka_args::{Guarantee, KafkaArgs};
/// #[derive(Parser)]
/// struct Job {
///     #[command(flatten)]
///     kafka: KafkaArgs,
/// }
/// let job = Job::parse_from(["job", "--brokers", "b:9092", "-X", "client.id=me", "--delivery", "at-least-once"]);
/// assert_eq!(job.kafka.delivery, Guarantee::AtLeastOnce);
/// assert_eq!(job.kafka.config().unwrap().properties.get("client.id").map(String::as_str), Some("me"));
/// assert!(Job::parse_from(["job", "-X", "no-equals-sign"]).kafka.config().is_err());
/// ```
#[derive(Args, Clone, Debug)]
// Without this, clap shows the doc comment above (doc-test included) as the long help of
// every job that flattens these arguments.
#[command(about = None, long_about = None)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers
    #[arg(long, env = "FLOE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A librdkafka property passed to every client, e.g. -X security.protocol=SSL (repeatable)
    #[arg(short = 'X', long = "kafka-property")]
    pub kafka_properties: Vec<String>,
    /// Delivery guarantee of the output and the dead letters
    #[arg(long, value_enum, default_value_t = Guarantee::ExactlyOnce)]
    pub delivery: Guarantee,
}

impl KafkaArgs {
    /// The client configuration, or what is wrong with a `-X` property.
    pub fn config(&self) -> anyhow::Result<KafkaConfig> {
        KafkaConfig::new(&self.brokers)
            .with_properties(self.kafka_properties.iter().map(String::as_str))
            .map_err(anyhow::Error::msg)
    }

    /// The sinks' delivery guarantee.
    pub fn sink_delivery(&self) -> Delivery {
        match self.delivery {
            Guarantee::None => Delivery::None,
            Guarantee::AtLeastOnce => Delivery::AtLeastOnce,
            Guarantee::ExactlyOnce => Delivery::ExactlyOnce,
        }
    }
}

/// Prints the line a Kafka job ends with (the tests read it): duration, the checkpoint it
/// restored from, its last checkpoint, the records its Kafka sources read, its dead letters
/// (and how many were cut to fit their topic), and the records its sources skipped because
/// they were deleted before they were read (only with an offset-out-of-range policy that
/// allows it).
pub fn print_summary(job: &str, result: &JobResult) {
    let sum = |metric| Registry::global().sum(metric, &[]);
    println!(
        "{job}: done in {:.2}s; restored from checkpoint {:?}; last checkpoint {:?}; records read {}; \
         dead letters {}; dead letters cut to fit {}; records lost {}",
        result.duration.as_secs_f64(),
        result.restored_from,
        result.last_checkpoint,
        sum(RECORDS_READ_METRIC),
        sum(DEAD_LETTERS_METRIC),
        sum(TRUNCATED_METRIC),
        sum(RECORDS_LOST_METRIC),
    );
}
