//! Kafka in the DSL: [`Env::read_kafka`], [`Stream::try_map`], [`Stream::dead_letters`] and
//! [`Stream::write_kafka`].
//!
//! Dead letters are counted in the process's metrics registry
//! ([`Registry::global`](floe_runtime::metrics::Registry::global)) as
//! `floe_dead_letters_total{operator="..."}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use floe_operators::kafka::sink::KafkaSink;
use floe_operators::kafka::source::{Envelope, KafkaSource, RECORDS_READ_METRIC};
use floe_operators::kafka::try_map::TryMapOperator;
use floe_operators::kafka::{DeadLetter, DEAD_LETTERS_METRIC};
use floe_runtime::metrics::{Counter, Registry};
use floe_runtime::{Data, SourceFunction};
use serde::Serialize;

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
        register_dead_letters(&name, &source.dead_letter_counter());
        Registry::global().register_counter(
            RECORDS_READ_METRIC,
            "Records read from Kafka (dead letters included)",
            &[("operator", &name)],
            &source.records_read(),
        );
        let stream = self.add_source(&name, parallelism, move |_| {
            let tag = tag.load(Ordering::SeqCst);
            let copy = source.with_dead_letter_tag((tag != 0).then_some(tag));
            Ok(Box::new(copy) as Box<dyn SourceFunction>)
        });
        stream.set_errors_tag(errors_tag);
        stream
    }
}

fn register_dead_letters(operator: &str, counter: &Counter) {
    Registry::global().register_counter(
        DEAD_LETTERS_METRIC,
        "Records set aside as dead letters (did not deserialize, or a user function rejected them)",
        &[("operator", operator)],
        counter,
    );
}

impl<T: Data + Serialize> Stream<Envelope<T>> {
    /// Applies `f` to each record's value; what `f` rejects with `Err(reason)` becomes a
    /// dead letter (error `rejected: <reason>`, the record's topic, partition, offset,
    /// timestamp and key, and the value as JSON) on this operator's
    /// [`dead_letters`](Stream::dead_letters), and the job goes on. Works on streams of
    /// [`Envelope`]s, which carry the origin: read them with
    /// [`WithMetadata`](floe_operators::kafka::source::WithMetadata). (To reject while
    /// deserializing, with the original bytes, use
    /// [`Deserializer::and_then`](floe_operators::kafka::source::Deserializer::and_then).)
    ///
    /// ```no_run
    /// use floe_dsl::prelude::*;
    /// use floe_dsl::kafka::source::{Json, KafkaSource, WithMetadata};
    /// use floe_dsl::kafka::sink::{Json as JsonOut, KafkaSink};
    /// use floe_dsl::kafka::KafkaConfig;
    ///
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Payment { user_id: u64, amount: f64 }
    ///
    /// let kafka = KafkaConfig::new("127.0.0.1:9092");
    /// let env = Env::local(1);
    /// let payments = env.read_kafka(
    ///     KafkaSource::builder(kafka.clone()).topic("payments").deserializer(WithMetadata(Json::<Payment>::new())).build()?,
    /// );
    /// let valid = payments.try_map(|p: &Payment| {
    ///     if p.amount > 0.0 { Ok(p.clone()) } else { Err(format!("amount {} is not positive", p.amount)) }
    /// });
    /// valid.dead_letters().write_kafka(KafkaSink::dead_letters(kafka.clone(), "payments-dlq").build()?);
    /// valid.write_kafka(KafkaSink::builder(kafka, "valid-payments").serializer(JsonOut).build()?);
    /// env.execute("validate")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_map<O: Data>(&self, f: impl Fn(&T) -> Result<O, String> + Send + Sync + 'static) -> Stream<O> {
        let f = Arc::new(f);
        let errors_tag = Arc::new(AtomicU64::new(0));
        let tag = errors_tag.clone();
        let rejected = Counter::default();
        let counter = rejected.clone();
        let stream: Stream<O> = self.one_to_one(
            "try_map",
            factory(move |_| {
                let tag = tag.load(Ordering::SeqCst);
                Box::new(TryMapOperator::new(
                    f.clone(),
                    (tag != 0).then_some(tag),
                    counter.clone(),
                ))
            }),
        );
        register_dead_letters(&format!("try_map#{}", stream.node_index()), &rejected);
        stream.set_errors_tag(errors_tag);
        stream
    }
}

impl<T: Data> Stream<T> {
    /// The records set aside by the operator this stream comes from: a Kafka source's
    /// records that do not deserialize, or those a [`try_map`](Stream::try_map) rejected,
    /// each with the error and its topic, partition, offset, timestamp, key and value:
    /// write them to a dead-letter topic with [`KafkaSink::dead_letters`]. Only on a stream
    /// returned by [`Env::read_kafka`] or [`Stream::try_map`].
    pub fn dead_letters(&self) -> Stream<DeadLetter> {
        self.error_output(
            "dead-letters",
            "dead_letters() is only available directly on a Kafka source (Env::read_kafka) or a try_map",
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
