//! Kafka in the DSL: [`Env::read_kafka`], [`Stream::dead_letters`] and
//! [`Stream::write_kafka`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use floe_operators::kafka::sink::KafkaSink;
use floe_operators::kafka::source::KafkaSource;
use floe_operators::kafka::DeadLetter;
use floe_runtime::{Data, SourceFunction};

use crate::stream::{factory, Sink, Stream};
use crate::Env;

impl Env {
    /// Reads Kafka with `source` (see [`KafkaSource::builder`]): one copy per subtask, each
    /// reading the partitions Floe assigns it, with offsets in the job's checkpoints and
    /// per-partition watermarks. Records that do not deserialize go to
    /// [`Stream::dead_letters`], or to the log when the job does not ask for them.
    ///
    /// ```no_run
    /// use floe_dsl::prelude::*;
    /// use floe_dsl::kafka::source::{Json, KafkaSource};
    /// use floe_dsl::kafka::sink::{Delivery, Json as JsonOut, KafkaSink};
    /// use floe_dsl::kafka::KafkaConfig;
    ///
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Payment { user_id: u64, amount: f64 }
    ///
    /// let kafka = KafkaConfig::new("127.0.0.1:9092");
    /// let env = Env::local(2);
    /// let payments = env.read_kafka(
    ///     KafkaSource::builder(kafka.clone()).topic("payments").deserializer(Json::<Payment>::new()).build()?,
    /// );
    /// payments.dead_letters().write_kafka(KafkaSink::dead_letters(kafka.clone(), "payments-dlq").build()?);
    /// payments
    ///     .filter(|p| p.amount > 1_000.0)
    ///     .write_kafka(KafkaSink::builder(kafka, "big-payments").serializer(JsonOut).delivery(Delivery::ExactlyOnce).build()?);
    /// env.execute("big-payments")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_kafka<T: Data>(&self, source: KafkaSource<T>) -> Stream<T> {
        let parallelism = self.config().parallelism;
        let errors_tag = Arc::new(AtomicU64::new(0));
        let tag = errors_tag.clone();
        let name = format!("kafka: {}", source.describe());
        let stream = self.add_source(&name, parallelism, move |_| {
            let tag = tag.load(Ordering::SeqCst);
            let copy = source.with_dead_letter_tag((tag != 0).then_some(tag));
            Ok(Box::new(copy) as Box<dyn SourceFunction>)
        });
        stream.set_errors_tag(errors_tag);
        stream
    }
}

impl<T: Data> Stream<T> {
    /// The records a Kafka source could not deserialize, with the error and their topic,
    /// partition, offset, timestamp, key and value: write them to a dead-letter topic with
    /// [`KafkaSink::dead_letters`]. Only on a stream returned by [`Env::read_kafka`].
    pub fn dead_letters(&self) -> Stream<DeadLetter> {
        self.error_output(
            "dead-letters",
            "dead_letters() is only available directly on a Kafka source (Env::read_kafka)",
        )
    }

    /// Writes every record to Kafka with `sink` (see [`KafkaSink::builder`]): one producer
    /// per subtask; with exactly-once delivery, the records of a checkpoint are committed in
    /// a Kafka transaction when the checkpoint completes.
    pub fn write_kafka(&self, sink: KafkaSink<T>) -> Sink {
        let p = self.upstream_parallelism();
        let name = format!("kafka: {} ({:?})", sink.topic(), sink.delivery());
        self.sink(&name, p, factory(move |_| Box::new(sink.clone())))
    }
}
