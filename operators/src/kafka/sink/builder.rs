//! Building a [`KafkaSink`]: the topic, how records become Kafka records, the delivery
//! guarantee, checked once at build time with errors that say what to change.

use std::sync::Arc;

use floe_runtime::{Data, RuntimeError};

use super::producer::kafka_error;
use super::serialize::Serializer;
use super::{Delivery, KafkaSink, KafkaSinkMetrics, Spec};
use crate::kafka::KafkaConfig;

/// Extracts a record's key.
pub(crate) type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
/// Chooses a record's partition from the topic's number of partitions.
pub(crate) type PartitionFn<T> = Arc<dyn Fn(&T, i32) -> i32 + Send + Sync>;
/// Gives a record's headers.
pub(crate) type HeadersFn<T> = Arc<dyn Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// Why a Kafka sink could not be built: the configuration is wrong, and the message says
/// how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Kafka sink for topic `{topic}`: {problem}")]
pub struct KafkaSinkConfigError {
    /// The topic the sink was to write.
    pub topic: String,
    /// What is wrong, and what to change.
    pub problem: String,
}

impl From<KafkaSinkConfigError> for RuntimeError {
    fn from(e: KafkaSinkConfigError) -> Self {
        RuntimeError::InvalidGraph(e.to_string())
    }
}

/// Builds a [`KafkaSink`]; start with [`KafkaSink::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct KafkaSinkBuilder<T> {
    config: KafkaConfig,
    topic: String,
    serializer: Option<Arc<dyn Serializer<T>>>,
    key: Option<KeyFn<T>>,
    partitioner: Option<PartitionFn<T>>,
    headers: Option<HeadersFn<T>>,
    delivery: Delivery,
    prefix: Option<String>,
    metrics: KafkaSinkMetrics,
}

impl<T: Data> KafkaSink<T> {
    /// Starts building a sink that writes to `topic` of the cluster `config` points at
    /// (its librdkafka properties pass through to the producer: TLS, SASL, compression,
    /// `linger.ms`, ...).
    ///
    /// A serializer is required; the key, partitioner and headers are optional (no key,
    /// librdkafka's partitioner, no headers); delivery is at-least-once unless set.
    ///
    /// ```no_run
    /// use floe_operators::kafka::sink::{Delivery, Json, KafkaSink};
    /// use floe_operators::kafka::KafkaConfig;
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Alert { user: u64, count: u32 }
    ///
    /// let config = KafkaConfig::new("127.0.0.1:9092").set("compression.type", "lz4");
    /// let sink = KafkaSink::<Alert>::builder(config, "alerts")
    ///     .serializer(Json)
    ///     .key(|a: &Alert| Some(a.user.to_be_bytes().to_vec()))
    ///     .headers(|_: &Alert| vec![("source".to_string(), b"fraud-job".to_vec())])
    ///     .delivery(Delivery::ExactlyOnce)
    ///     .transactional_id_prefix("fraud-alerts")
    ///     .build()?;
    /// let written = sink.metrics();
    /// // In a job: `alerts.add_sink("kafka-alerts", move |_| Box::new(sink.clone()))`.
    /// # let _ = written.records_written();
    /// # Ok::<(), floe_operators::kafka::sink::KafkaSinkConfigError>(())
    /// ```
    pub fn builder(config: KafkaConfig, topic: impl Into<String>) -> KafkaSinkBuilder<T> {
        KafkaSinkBuilder {
            config,
            topic: topic.into(),
            serializer: None,
            key: None,
            partitioner: None,
            headers: None,
            delivery: Delivery::default(),
            prefix: None,
            metrics: KafkaSinkMetrics::default(),
        }
    }
}

impl<T: Data> KafkaSinkBuilder<T> {
    /// How values become the bytes of a Kafka record's value: [`Json`](super::Json),
    /// [`Utf8`](super::Utf8), [`Bytes`](super::Bytes), a `Fn(&T) -> Vec<u8>` closure or
    /// your own [`Serializer`]. Required.
    pub fn serializer(mut self, serializer: impl Serializer<T>) -> Self {
        self.serializer = Some(Arc::new(serializer));
        self
    }

    /// Extracts each record's key (`None`: no key). Records with the same key go to the
    /// same partition (with librdkafka's partitioner), in order.
    pub fn key(mut self, key: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Chooses each record's partition, given the number of partitions of the topic (read
    /// when the sink opens). A result outside `0..partitions` fails the job. Without it,
    /// librdkafka's partitioner places records by key (its `partitioner` property;
    /// `murmur2_random` is the Java client's).
    pub fn partitioner(mut self, partitioner: impl Fn(&T, i32) -> i32 + Send + Sync + 'static) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }

    /// Gives each record's headers (name, value).
    pub fn headers(mut self, headers: impl Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static) -> Self {
        self.headers = Some(Arc::new(headers));
        self
    }

    /// The delivery guarantee (at-least-once by default).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The prefix of the transactional ids of exactly-once delivery (`<prefix>-<subtask>`)
    /// and of its commit-marker groups. It must stay the same across restarts of the job
    /// and be unique to this sink among all jobs writing to the cluster. The default,
    /// `floe-<job>-<operator>-<node>`, changes if the job or the sink is renamed or the
    /// graph changes shape.
    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Counts into `metrics` (to share one handle between sinks); each sink has its own
    /// otherwise, available from [`KafkaSink::metrics`].
    pub fn metrics(mut self, metrics: KafkaSinkMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The topic the sink is to write.
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    /// The sink, or what is wrong with its configuration.
    pub fn build(self) -> Result<KafkaSink<T>, KafkaSinkConfigError> {
        let problem = |problem: String| KafkaSinkConfigError {
            topic: self.topic.clone(),
            problem,
        };
        if let Some(p) = topic_problem(&self.topic) {
            return Err(problem(p));
        }
        if self.config.brokers.trim().is_empty() {
            return Err(problem(
                "no bootstrap servers: give `KafkaConfig::new(\"host:port\")` the brokers".into(),
            ));
        }
        let Some(serializer) = self.serializer.clone() else {
            return Err(problem(
                "no serializer: call `.serializer(..)` with `Json`, `Utf8`, `Bytes` or a closure".into(),
            ));
        };
        if self.config.properties.contains_key("transactional.id") {
            return Err(problem(
                "the `transactional.id` property is the sink's to set (one per subtask): use \
                 `.delivery(Delivery::ExactlyOnce)` and `.transactional_id_prefix(..)` instead"
                    .into(),
            ));
        }
        if let Some(prefix) = &self.prefix {
            if prefix.trim().is_empty() || prefix.chars().any(char::is_control) {
                return Err(problem(format!(
                    "transactional id prefix `{prefix}` is empty or has control characters"
                )));
            }
        }
        if self.delivery == Delivery::ExactlyOnce {
            let props = &self.config.properties;
            if props.get("enable.idempotence").is_some_and(|v| v == "false") {
                return Err(problem(
                    "exactly-once delivery needs the idempotent producer: remove `enable.idempotence=false`".into(),
                ));
            }
            if props.get("acks").is_some_and(|v| v != "all" && v != "-1") {
                return Err(problem(
                    "exactly-once delivery needs `acks=all`: remove the `acks` property".into(),
                ));
            }
        }
        // Unknown properties and bad values fail now rather than when the job starts.
        self.config
            .client_config(&[])
            .create_native_config()
            .map_err(|e| problem(kafka_error("", e).to_string().trim_start_matches(": ").to_string()))?;
        Ok(KafkaSink::from_spec(Spec {
            config: self.config,
            topic: self.topic,
            serializer,
            key: self.key,
            partitioner: self.partitioner,
            headers: self.headers,
            delivery: self.delivery,
            prefix: self.prefix,
            metrics: self.metrics,
        }))
    }
}

/// What is wrong with a topic name, if anything (Kafka's rules).
fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("the topic name is empty".into());
    }
    if topic == "." || topic == ".." {
        return Some("`.` and `..` are not topic names".into());
    }
    if topic.len() > 249 {
        return Some(format!("the topic name has {} characters (at most 249)", topic.len()));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "the topic name has the character {c:?} (only ASCII letters, digits, `.`, `_` and `-` are allowed)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::sink::Utf8;

    fn err(b: KafkaSinkBuilder<String>) -> String {
        match b.build() {
            Ok(_) => panic!("built"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_configurations_fail_at_build_saying_what_to_change() {
        let c = || KafkaConfig::new("127.0.0.1:9092");
        let b = |topic: &str| KafkaSink::<String>::builder(c(), topic).serializer(Utf8);
        assert!(err(b("")).contains("topic name is empty"));
        assert!(err(b("a b")).contains("' '"));
        assert!(err(b(&"x".repeat(250))).contains("at most 249"));
        assert!(err(KafkaSink::<String>::builder(c(), "t")).contains("no serializer"));
        assert!(err(KafkaSink::<String>::builder(KafkaConfig::new(""), "t").serializer(Utf8)).contains("bootstrap"));
        let with = |k: &str, v: &str| KafkaSink::<String>::builder(c().set(k, v), "t").serializer(Utf8);
        assert!(err(with("transactional.id", "x")).contains("transactional_id_prefix"));
        assert!(err(with("acks", "1").delivery(Delivery::ExactlyOnce)).contains("acks=all"));
        assert!(err(with("enable.idempotence", "false").delivery(Delivery::ExactlyOnce)).contains("idempotent"));
        assert!(err(with("no.such.property", "1")).contains("no.such.property"));
        let secret = err(with("sasl.password", "hunter2").delivery(Delivery::None).linger("x"));
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(err(b("t").transactional_id_prefix(" ")).contains("prefix"));
        assert!(b("orders.v1_out-2").build().is_ok());
        assert!(with("acks", "1").build().is_ok(), "any acks without exactly-once");
    }

    impl KafkaSinkBuilder<String> {
        /// Makes the configuration invalid by a bad value of a non-secret property.
        fn linger(mut self, v: &str) -> Self {
            self.config = self.config.set("linger.ms", v);
            self
        }
    }
}
