//! The dead-letter sink: a [`KafkaSink`] of [`DeadLetter`]s that writes each one as it was
//! read (original key and payload) with the error and its origin in headers.
//!
//! A dead letter can be larger than the dead-letter topic accepts (a 5 MB record that is
//! not JSON is a dead letter too), and a record the producer refuses would fail the job. So
//! a dead letter that does not fit in [`max_record_bytes`](KafkaSinkBuilder::max_record_bytes)
//! (by default the sink's `message.max.bytes`, librdkafka's default 1,000,000 if not set)
//! is cut to fit: the payload first, the key only if it is itself large. The record then
//! carries its original sizes in headers ([`TRUNCATED`](headers::TRUNCATED),
//! [`TRUNCATED_KEY`](headers::TRUNCATED_KEY)), is counted in
//! [`TRUNCATED_METRIC`], and a warning is logged (rate-limited). The job goes on.

use std::sync::{Arc, Mutex, PoisonError};

use floe_runtime::metrics::{Counter, Registry};
use floe_runtime::UserError;
use tracing::warn;

use super::{Delivery, KafkaSink, KafkaSinkBuilder, Serializer};
use crate::kafka::dead_letter::{headers, DeadLetter, DEFAULT_MAX_RECORD_BYTES, TRUNCATED_METRIC};
use crate::kafka::rate_limit::RateLimit;
use crate::kafka::KafkaConfig;

/// Writes dead letters to a dead-letter topic; build it with [`KafkaSink::dead_letters`].
pub type DeadLetterSink = KafkaSink<DeadLetter>;

/// Bytes kept aside for the record's framing (librdkafka counts at most 40) and the
/// truncation headers.
const OVERHEAD: usize = 256;

/// Longest error text written to the [`ERROR`](headers::ERROR) header.
const MAX_ERROR_BYTES: usize = 4096;

/// How much of a dead letter is written: bytes of the key, the payload and the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fit {
    key: usize,
    payload: usize,
    error: usize,
}

/// The size limit of one dead-letter sink, shared by its serializer, key and header
/// functions.
#[derive(Debug)]
struct Limit {
    max_bytes: usize,
    topic: String,
    truncated: Counter,
    warn: Mutex<RateLimit>,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn char_prefix(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

impl Limit {
    fn new(max_bytes: usize, topic: &str) -> Self {
        let truncated = Registry::global().counter(
            TRUNCATED_METRIC,
            "Dead letters cut to fit the dead-letter topic's record size (their original sizes are in headers)",
            &[("topic", topic)],
        );
        Limit {
            max_bytes,
            topic: topic.to_string(),
            truncated,
            warn: Mutex::default(),
        }
    }

    /// What of `d` fits in one record.
    fn fit(&self, d: &DeadLetter) -> Fit {
        let key_len = d.key.as_ref().map_or(0, Vec::len);
        let payload_len = d.payload.as_ref().map_or(0, Vec::len);
        let error = char_prefix(&d.error, MAX_ERROR_BYTES);
        let headers: usize =
            origin_headers(d).iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + headers::ERROR.len() + error;
        let budget = self.max_bytes.saturating_sub(OVERHEAD + headers);
        if key_len + payload_len <= budget {
            return Fit {
                key: key_len,
                payload: payload_len,
                error,
            };
        }
        // A key keeps what the payload leaves, and at least half the room if it needs it.
        let key = key_len.min((budget / 2).max(budget.saturating_sub(payload_len)));
        Fit {
            key,
            payload: payload_len.min(budget - key),
            error,
        }
    }

    /// Counts and reports a dead letter that was cut.
    fn truncated(&self, d: &DeadLetter, fit: Fit) {
        self.truncated.inc();
        let suppressed = self.warn.lock().unwrap_or_else(PoisonError::into_inner).check();
        if let Some(suppressed) = suppressed {
            warn!(
                dead_letter_topic = %self.topic,
                topic = %d.topic,
                partition = d.partition,
                offset = d.offset,
                payload_bytes = d.payload.as_ref().map_or(0, Vec::len),
                written_bytes = fit.payload,
                key_bytes = d.key.as_ref().map_or(0, Vec::len),
                written_key_bytes = fit.key,
                max_record_bytes = self.max_bytes,
                suppressed,
                total = self.truncated.get(),
                "dead letter too large for its topic: written cut short, with its original size in the `{}` header",
                headers::TRUNCATED
            );
        }
    }

    fn key(&self, d: &DeadLetter) -> Option<Vec<u8>> {
        let key = d.key.as_ref()?;
        Some(key[..self.fit(d).key].to_vec())
    }

    fn headers(&self, d: &DeadLetter) -> Vec<(String, Vec<u8>)> {
        let fit = self.fit(d);
        let mut h = vec![(headers::ERROR.to_string(), d.error.as_bytes()[..fit.error].to_vec())];
        h.extend(origin_headers(d));
        if let Some(p) = &d.payload {
            if fit.payload < p.len() {
                h.push((headers::TRUNCATED.to_string(), p.len().to_string().into_bytes()));
            }
        }
        if let Some(k) = &d.key {
            if fit.key < k.len() {
                h.push((headers::TRUNCATED_KEY.to_string(), k.len().to_string().into_bytes()));
            }
        }
        h
    }
}

/// Writes a dead letter's original payload as it was read (a null payload stays null), cut
/// to fit the sink's record size.
#[derive(Clone, Debug)]
pub struct DeadLetterSerializer {
    limit: Arc<Limit>,
}

impl DeadLetterSerializer {
    /// A serializer for dead letters written to `topic` in records of at most `max_bytes`
    /// (key, value and headers).
    pub fn new(max_bytes: usize, topic: &str) -> Self {
        DeadLetterSerializer {
            limit: Arc::new(Limit::new(max_bytes, topic)),
        }
    }
}

impl Serializer<DeadLetter> for DeadLetterSerializer {
    fn serialize(&self, value: &DeadLetter, out: &mut Vec<u8>) -> Result<(), UserError> {
        let payload = value.payload.as_deref().unwrap_or_default();
        let fit = self.limit.fit(value);
        if fit.payload < payload.len() || fit.key < value.key.as_ref().map_or(0, Vec::len) {
            self.limit.truncated(value, fit);
        }
        out.extend_from_slice(&payload[..fit.payload]);
        Ok(())
    }

    fn is_null(&self, value: &DeadLetter) -> bool {
        value.payload.is_none()
    }
}

/// The origin headers of a dead letter's record.
fn origin_headers(d: &DeadLetter) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![
        (headers::TOPIC.to_string(), d.topic.as_bytes().to_vec()),
        (headers::PARTITION.to_string(), d.partition.to_string().into_bytes()),
        (headers::OFFSET.to_string(), d.offset.to_string().into_bytes()),
    ];
    if let Some(ts) = d.timestamp {
        h.push((headers::TIMESTAMP.to_string(), ts.to_string().into_bytes()));
    }
    h
}

/// The producer's `message.max.bytes` in `config`, or librdkafka's default.
fn producer_limit(config: &KafkaConfig) -> usize {
    config
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_RECORD_BYTES)
}

impl KafkaSink<DeadLetter> {
    /// Starts building a dead-letter sink writing to `topic`: each [`DeadLetter`] becomes a
    /// record with its original key and payload, and headers
    /// [`floe.error`](headers::ERROR), [`floe.source.topic`](headers::TOPIC),
    /// [`floe.source.partition`](headers::PARTITION), [`floe.source.offset`](headers::OFFSET)
    /// and, if it had one, [`floe.source.timestamp`](headers::TIMESTAMP). Delivery is
    /// at-least-once (flushed at every checkpoint barrier); `.delivery(Delivery::ExactlyOnce)`
    /// writes them in the checkpoint's transactions instead.
    ///
    /// A dead letter larger than the record size (`message.max.bytes` of `config`, 1,000,000
    /// bytes if not set; or [`max_record_bytes`](KafkaSinkBuilder::max_record_bytes)) is cut
    /// to fit, with its original size in the
    /// [`floe.truncated.original-bytes`](headers::TRUNCATED) header, and counted in
    /// [`TRUNCATED_METRIC`]: it never stops the job.
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
        let topic = topic.into();
        let max_bytes = producer_limit(&config);
        KafkaSink::builder(config, topic.clone())
            .delivery(Delivery::AtLeastOnce)
            .max_record_bytes_for(max_bytes, &topic)
    }
}

impl KafkaSinkBuilder<DeadLetter> {
    /// Cuts dead letters to records of at most `max_bytes` (key, value and headers) rather
    /// than the sink's `message.max.bytes`: for a dead-letter topic whose brokers accept
    /// less than the producer (the topic's `max.message.bytes`). Sets the serializer, key
    /// and headers of the dead-letter sink again.
    ///
    /// ```
    /// use floe_operators::kafka::sink::KafkaSink;
    /// use floe_operators::kafka::KafkaConfig;
    /// let dlq = KafkaSink::dead_letters(KafkaConfig::new("127.0.0.1:9092"), "payments-dlq")
    ///     .max_record_bytes(512 * 1024)
    ///     .build()?;
    /// # let _ = dlq;
    /// # Ok::<(), floe_operators::kafka::sink::KafkaSinkConfigError>(())
    /// ```
    pub fn max_record_bytes(self, max_bytes: usize) -> Self {
        let topic = self.topic().to_string();
        self.max_record_bytes_for(max_bytes, &topic)
    }

    fn max_record_bytes_for(self, max_bytes: usize, topic: &str) -> Self {
        let serializer = DeadLetterSerializer::new(max_bytes, topic);
        let (for_key, for_headers) = (serializer.limit.clone(), serializer.limit.clone());
        self.serializer(serializer)
            .key(move |d: &DeadLetter| for_key.key(d))
            .headers(move |d: &DeadLetter| for_headers.headers(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(key: usize, payload: usize, error: &str) -> DeadLetter {
        DeadLetter {
            error: error.into(),
            topic: "in".into(),
            partition: 3,
            offset: 42,
            timestamp: None,
            key: Some(vec![b'k'; key]),
            payload: Some(vec![b'p'; payload]),
        }
    }

    /// The bytes a record of `d` takes through the sink, as librdkafka counts them (plus
    /// its framing, at most 40).
    fn record_bytes(s: &DeadLetterSerializer, d: &DeadLetter) -> usize {
        let mut value = Vec::new();
        s.serialize(d, &mut value).unwrap();
        let headers: usize = s.limit.headers(d).iter().map(|(k, v)| k.len() + v.len()).sum();
        value.len() + s.limit.key(d).map_or(0, |k| k.len()) + headers + 40
    }

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
        let s = DeadLetterSerializer::new(DEFAULT_MAX_RECORD_BYTES, "unit-dlq-whole");
        let mut out = Vec::new();
        s.serialize(&d, &mut out).unwrap();
        assert_eq!(out, [0xff, 0]);
        assert!(!s.is_null(&d));
        assert!(s.is_null(&DeadLetter::default()));
        let h = s.limit.headers(&d);
        assert_eq!(
            h.len(),
            4,
            "no timestamp header without a timestamp, no truncation header"
        );
        assert_eq!(h[2], (headers::PARTITION.to_string(), b"3".to_vec()));
        assert_eq!(s.limit.key(&d), Some(vec![1]));
        assert_eq!(s.limit.truncated.get(), 0);
    }

    #[test]
    fn oversized_dead_letters_are_cut_to_fit_marked_and_counted() {
        let max = 10_000;
        let s = DeadLetterSerializer::new(max, "unit-dlq-cut");
        let cases = [
            (letter(10, 50_000, "bad"), true, false),              // a large payload
            (letter(50_000, 10, "bad"), false, true),              // a large key
            (letter(50_000, 50_000, "bad"), true, true),           // both
            (letter(0, 50_000, &"é".repeat(10_000)), true, false), // and a long error
            (letter(10, 9_000, "bad"), false, false),              // fits
        ];
        for (d, payload_cut, key_cut) in &cases {
            assert!(record_bytes(&s, d) <= max, "{} bytes", record_bytes(&s, d));
            let h = s.limit.headers(d);
            let header = |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            let original = |b: &Option<Vec<u8>>| b.as_ref().map(|b| b.len().to_string().into_bytes());
            assert_eq!(header(headers::TRUNCATED).is_some(), *payload_cut);
            assert_eq!(header(headers::TRUNCATED_KEY).is_some(), *key_cut);
            if *payload_cut {
                assert_eq!(header(headers::TRUNCATED), original(&d.payload));
            }
            if *key_cut {
                assert_eq!(header(headers::TRUNCATED_KEY), original(&d.key));
            }
            let error = header(headers::ERROR).unwrap();
            assert!(
                std::str::from_utf8(&error).is_ok(),
                "the error is cut on a character boundary"
            );
            assert!(d.error.as_bytes().starts_with(&error));
            // What is written is a prefix of the original.
            let mut value = Vec::new();
            s.serialize(d, &mut value).unwrap();
            assert!(d.payload.as_ref().unwrap().starts_with(&value));
            assert!(d.key.as_ref().unwrap().starts_with(&s.limit.key(d).unwrap()));
        }
        // A small key is kept whole while the payload is cut.
        assert_eq!(s.limit.key(&cases[0].0).map(|k| k.len()), Some(10));
        // Each case was serialized twice (to measure it, then to check it).
        assert_eq!(
            s.limit.truncated.get(),
            8,
            "counted once per serialized dead letter cut"
        );
        assert_eq!(
            Registry::global().value(TRUNCATED_METRIC, &[("topic", "unit-dlq-cut")]),
            Some(8.0)
        );
    }

    #[test]
    fn the_limit_follows_message_max_bytes() {
        assert_eq!(producer_limit(&KafkaConfig::new("b:1")), DEFAULT_MAX_RECORD_BYTES);
        assert_eq!(
            producer_limit(&KafkaConfig::new("b:1").set("message.max.bytes", "2000000")),
            2_000_000
        );
    }
}
