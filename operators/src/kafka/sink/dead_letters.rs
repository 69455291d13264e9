//! The dead-letter sink: a [`KafkaSink`] of [`DeadLetter`]s that writes each one as it was
//! read (original key and payload) with the error and its origin in headers.

use floe_runtime::UserError;

use super::{Delivery, KafkaSink, KafkaSinkBuilder, Serializer};
use crate::kafka::dead_letter::{headers, DeadLetter};
use crate::kafka::KafkaConfig;

/// Writes dead letters to a dead-letter topic; build it with [`KafkaSink::dead_letters`].
pub type DeadLetterSink = KafkaSink<DeadLetter>;

/// Writes a dead letter's original payload as it was read (a null payload stays null).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadLetterSerializer;

impl Serializer<DeadLetter> for DeadLetterSerializer {
    fn serialize(&self, value: &DeadLetter, out: &mut Vec<u8>) -> Result<(), UserError> {
        out.extend_from_slice(value.payload.as_deref().unwrap_or_default());
        Ok(())
    }

    fn is_null(&self, value: &DeadLetter) -> bool {
        value.payload.is_none()
    }
}

/// The headers of a dead letter's record.
fn dead_letter_headers(d: &DeadLetter) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![
        (headers::ERROR.to_string(), d.error.as_bytes().to_vec()),
        (headers::TOPIC.to_string(), d.topic.as_bytes().to_vec()),
        (headers::PARTITION.to_string(), d.partition.to_string().into_bytes()),
        (headers::OFFSET.to_string(), d.offset.to_string().into_bytes()),
    ];
    if let Some(ts) = d.timestamp {
        h.push((headers::TIMESTAMP.to_string(), ts.to_string().into_bytes()));
    }
    h
}

impl KafkaSink<DeadLetter> {
    /// Starts building a dead-letter sink writing to `topic`: each [`DeadLetter`] becomes a
    /// record with its original key and payload, and headers
    /// [`floe.error`](headers::ERROR), [`floe.source.topic`](headers::TOPIC),
    /// [`floe.source.partition`](headers::PARTITION), [`floe.source.offset`](headers::OFFSET)
    /// and, if it had one, [`floe.source.timestamp`](headers::TIMESTAMP). Delivery is
    /// at-least-once (flushed at every checkpoint barrier); `.delivery(Delivery::ExactlyOnce)`
    /// writes them in the checkpoint's transactions instead. Records larger than 1 MB need
    /// a larger `message.max.bytes` in `config`.
    ///
    /// ```no_run
    /// use floe_operators::kafka::sink::KafkaSink;
    /// use floe_operators::kafka::KafkaConfig;
    /// let dlq = KafkaSink::dead_letters(KafkaConfig::new("127.0.0.1:9092"), "payments-dlq").build()?;
    /// let written = dlq.metrics();
    /// # let _ = written;
    /// # Ok::<(), floe_operators::kafka::sink::KafkaSinkConfigError>(())
    /// ```
    pub fn dead_letters(config: KafkaConfig, topic: impl Into<String>) -> KafkaSinkBuilder<DeadLetter> {
        KafkaSink::builder(config, topic)
            .serializer(DeadLetterSerializer)
            .key(|d: &DeadLetter| d.key.clone())
            .headers(dead_letter_headers)
            .delivery(Delivery::AtLeastOnce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_their_bytes_and_origin() {
        let d = DeadLetter {
            error: "bad json".into(),
            topic: "in".into(),
            partition: 3,
            offset: 42,
            timestamp: None,
            key: Some(vec![1]),
            payload: Some(vec![0xff, 0]),
        };
        let mut out = Vec::new();
        DeadLetterSerializer.serialize(&d, &mut out).unwrap();
        assert_eq!(out, [0xff, 0]);
        assert!(!DeadLetterSerializer.is_null(&d));
        assert!(DeadLetterSerializer.is_null(&DeadLetter::default()));
        let h = dead_letter_headers(&d);
        assert_eq!(h.len(), 4, "no timestamp header without a timestamp");
        assert_eq!(h[2], (headers::PARTITION.to_string(), b"3".to_vec()));
    }
}
