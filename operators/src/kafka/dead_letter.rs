//! Dead letters: records a job could not process, with the reason and their origin, set
//! aside for a dead-letter topic instead of stopping the job or being dropped.

use serde::{Deserialize, Serialize};

/// A record that failed (to deserialize, or a user function rejected it), with where it
/// came from. The dead-letter sink writes `payload` as the value and `key` as the key of a
/// record of the dead-letter topic, and the rest as headers (`floe.error`,
/// `floe.source.topic`, `floe.source.partition`, `floe.source.offset`,
/// `floe.source.timestamp`); one too large for the topic is cut to fit and marked
/// (`floe.truncated.original-bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why the record was set aside.
    pub error: String,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), if it had one.
    pub timestamp: Option<i64>,
    /// Its key, as read.
    pub key: Option<Vec<u8>>,
    /// Its value, as read.
    pub payload: Option<Vec<u8>>,
}

/// Largest dead-letter record (key, value and headers) the dead-letter sink writes when its
/// configuration does not set `message.max.bytes`: librdkafka's default for that property.
/// (Kafka brokers accept 1,048,588 bytes per batch by default.)
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1_000_000;

/// Name of the counter of dead letters cut to fit their topic (label `topic`: the
/// dead-letter topic).
pub const TRUNCATED_METRIC: &str = "floe_dead_letters_truncated_total";

/// Header names of dead-letter records.
pub mod headers {
    /// The error.
    pub const ERROR: &str = "floe.error";
    /// The source topic.
    pub const TOPIC: &str = "floe.source.topic";
    /// The source partition (decimal).
    pub const PARTITION: &str = "floe.source.partition";
    /// The source offset (decimal).
    pub const OFFSET: &str = "floe.source.offset";
    /// The source timestamp (ms, decimal), when the record had one.
    pub const TIMESTAMP: &str = "floe.source.timestamp";
    /// The size of the original payload (bytes, decimal), on a dead letter whose payload
    /// was cut to fit the dead-letter topic (the value is its first bytes).
    pub const TRUNCATED: &str = "floe.truncated.original-bytes";
    /// The size of the original key (bytes, decimal), on a dead letter whose key was cut.
    pub const TRUNCATED_KEY: &str = "floe.truncated.original-key-bytes";
}
