//! The sink's librdkafka producer: a `BaseProducer` polled by the task thread, whose
//! context counts acknowledgements and keeps delivery failures until the sink reports them,
//! and whose log lines go to `tracing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use floe_runtime::{Result, RuntimeError};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::Message;
use tracing::{debug, error, info, warn};

use super::KafkaSinkMetrics;
use crate::kafka::config::is_secret;
use crate::kafka::KafkaConfig;

/// How long the sink waits for the broker in a transactional call or a metadata request.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(60);

/// A plain error message as the source of a [`RuntimeError`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ErrorText(pub(crate) String);

/// A Kafka error as an external [`RuntimeError`], with the values of secret properties
/// kept out of the message (librdkafka's configuration errors quote the value).
pub(crate) fn kafka_error(context: impl Into<String>, e: KafkaError) -> RuntimeError {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            let shown = if is_secret(&key) {
                "<redacted>".to_string()
            } else {
                value
            };
            RuntimeError::external(
                context,
                ErrorText(format!("invalid client property `{key}` = `{shown}`: {desc}")),
            )
        }
        e => RuntimeError::external(context, e),
    }
}

/// A record ready for librdkafka (which copies key, value and takes the headers).
pub(crate) struct OutRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub headers: Option<OwnedHeaders>,
}

/// What the producer's callbacks saw.
pub(crate) struct SinkContext {
    metrics: KafkaSinkMetrics,
    /// Whether acknowledged records count as written (not in transactions: they count
    /// once their transaction commits).
    count_acks: bool,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl SinkContext {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.metrics.counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            if first.is_none() {
                warn!(error = %what, "Kafka sink: a record could not be delivered");
                *first = Some(what);
            }
        }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", facility = fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(target: "librdkafka", facility = fac, "{message}"),
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            // The idempotent or transactional producer cannot go on: fail the next check.
            self.fail(format!("fatal producer error: {reason}"));
        } else {
            warn!(target: "librdkafka", %error, reason, "Kafka producer error (librdkafka retries)");
        }
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                if self.count_acks {
                    self.metrics.counters.written.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((e, m)) => self.fail(format!("partition {} of `{}`: {e}", m.partition(), m.topic())),
        }
    }
}

/// The sink's producer, for one topic.
pub(crate) struct SinkProducer {
    inner: BaseProducer<SinkContext>,
    topic: String,
    /// Delivery failures already reported.
    reported: u64,
}

impl SinkProducer {
    /// A producer with Floe's `defaults` under the user's properties.
    pub(crate) fn create(
        config: &KafkaConfig,
        defaults: &[(&str, &str)],
        topic: &str,
        metrics: &KafkaSinkMetrics,
        count_acks: bool,
    ) -> Result<Self> {
        let context = SinkContext {
            metrics: metrics.clone(),
            count_acks,
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        };
        let inner = config
            .client_config(defaults)
            .create_with_context(context)
            .map_err(|e| kafka_error(format!("creating the Kafka producer for topic `{topic}`"), e))?;
        Ok(SinkProducer {
            inner,
            topic: topic.to_string(),
            reported: 0,
        })
    }

    /// The librdkafka producer.
    pub(crate) fn inner(&self) -> &BaseProducer<SinkContext> {
        &self.inner
    }

    /// Hands `record` to librdkafka; when its queue is full, serves delivery reports until
    /// there is room (never drops the record).
    pub(crate) fn send(&self, record: OutRecord<'_>) -> Result<()> {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic);
        r.key = record.key;
        r.payload = record.value;
        r.partition = record.partition;
        r.timestamp = record.timestamp;
        r.headers = record.headers;
        loop {
            match self.inner.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    r = back;
                    self.inner.poll(Duration::from_millis(100));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), back)) => {
                    let size = back.payload.map_or(0, <[u8]>::len) + back.key.map_or(0, <[u8]>::len);
                    return Err(RuntimeError::InvalidRecord(format!(
                        "Kafka sink `{}`: a record of {size} bytes (key and value) is larger than the \
                         producer's `message.max.bytes`; raise it (and the topic's `max.message.bytes`) \
                         in the sink's Kafka properties",
                        self.topic
                    )));
                }
                Err((e, _)) => return Err(kafka_error(format!("producing to Kafka topic `{}`", self.topic), e)),
            }
        }
    }

    /// Serves delivery reports that are ready, without waiting.
    pub(crate) fn poll(&self) {
        self.inner.poll(Duration::ZERO);
    }

    /// Waits until every record handed over so far is acknowledged or has failed.
    pub(crate) fn flush(&self) -> Result<()> {
        // Every record is acknowledged or fails within `message.timeout.ms`.
        self.inner
            .flush(Timeout::Never)
            .map_err(|e| kafka_error(format!("flushing records to Kafka topic `{}`", self.topic), e))
    }

    /// Fails if a record failed since the last check: delivery failures are never dropped.
    pub(crate) fn check(&mut self) -> Result<()> {
        let failed = self.inner.context().failed.load(Ordering::Relaxed);
        if failed == self.reported {
            return Ok(());
        }
        let new = failed - self.reported;
        self.reported = failed;
        let first = self
            .inner
            .context()
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        Err(RuntimeError::external(
            format!("Kafka sink `{}`: {new} record(s) could not be delivered", self.topic),
            ErrorText(format!("first failure: {first}")),
        ))
    }

    /// The number of partitions of the topic, or `None` if the broker does not know it.
    pub(crate) fn partitions(&self) -> Result<Option<i32>> {
        let meta = self
            .inner
            .client()
            .fetch_metadata(Some(&self.topic), BROKER_TIMEOUT)
            .map_err(|e| kafka_error(format!("reading the metadata of Kafka topic `{}`", self.topic), e))?;
        Ok(meta
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    }
}
