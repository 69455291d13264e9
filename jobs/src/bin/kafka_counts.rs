//! Running counts per key from one Kafka topic to another, exactly once: the Kafka job the
//! crash tests kill and restart.
//!
//! Input records are JSON `{"key": "...", "seq": N}`; for each, the job writes
//! `{"key", "seq", "count"}` (the key's count so far) to the output topic, keyed by `key`.
//! Records that are not such JSON, or whose key is empty (rejected by a check the job runs
//! on each event), go to the dead-letter topic with their origin.
//!
//! ```text
//! kafka-counts --brokers 127.0.0.1:9092 --input events --output counts \
//!     --checkpoint-dir chk/ --checkpoint-interval-ms 1000
//! ```

use clap::Parser;
use floe_dsl::kafka::sink::{Json as JsonOut, KafkaSink};
use floe_dsl::kafka::source::{Deserializer, Json, KafkaSource, StartPosition};
use floe_dsl::prelude::*;
use floe_jobs::kafka_args::{print_summary, KafkaArgs};
use serde::{Deserialize, Serialize};

#[derive(Parser, Debug)]
#[command(
    name = "kafka-counts",
    about = "Running counts per key, Kafka to Kafka, exactly once"
)]
struct Args {
    #[command(flatten)]
    floe: EnvOptions,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Topic to read
    #[arg(long, default_value = "events")]
    input: String,
    /// Topic to write counts to
    #[arg(long, default_value = "counts")]
    output: String,
    /// Topic for records that are not valid input
    #[arg(long, default_value = "events-dlq")]
    dead_letters: String,
    /// Consumer group the offsets of completed checkpoints are committed to
    #[arg(long, default_value = "floe-kafka-counts")]
    group: String,
    /// Stop at the end of the input as it is when the job starts (instead of following it)
    #[arg(long)]
    bounded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    key: String,
    seq: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Counted {
    key: String,
    seq: u64,
    count: u64,
}

/// The job's check of each event: a user function whose rejections become dead letters.
fn valid(e: Event) -> Result<Event, String> {
    if e.key.is_empty() {
        return Err("the key is empty".into());
    }
    Ok(e)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(floe_dsl::job::args()); // run, graph, submit or worker
    init_logging();
    let env = Env::from_options(&args.floe)?;
    let kafka = args.kafka.config()?;
    let delivery = args.kafka.sink_delivery();
    let mut source = KafkaSource::builder(kafka.clone())
        .topic(&args.input)
        .deserializer(Json::<Event>::new().and_then(valid))
        .group_id(&args.group)
        .start(StartPosition::Earliest);
    if args.bounded {
        source = source.bounded();
    }
    let events = env.read_kafka(source.build()?);
    events.dead_letters().write_kafka(
        KafkaSink::dead_letters(kafka.clone(), &args.dead_letters)
            .delivery(delivery)
            .build()?,
    );
    events
        .map(|e| Counted {
            key: e.key,
            seq: e.seq,
            count: 1,
        })
        .key_by(|c| c.key.clone())
        .reduce(|total, c| Counted {
            key: c.key.clone(),
            seq: c.seq,
            count: total.count + 1,
        })
        .write_kafka(
            KafkaSink::builder(kafka, &args.output)
                .serializer(JsonOut)
                .key(|c: &Counted| Some(c.key.as_bytes().to_vec()))
                .delivery(delivery)
                .build()?,
        );
    let result = env.execute("kafka-counts")?;
    print_summary("kafka-counts", &result);
    Ok(())
}
