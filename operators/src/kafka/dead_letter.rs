//! Dead letters: records a job could not process, with the reason and their origin, set
//! aside for a dead-letter topic instead of stopping the job or being dropped.

use serde::{Deserialize, Serialize};

/// A record that failed (to deserialize, or a user function rejected it), with where it
/// came from. The dead-letter sink writes `payload` as the value and `key` as the key of a
/// record of the dead-letter topic, and the rest as headers (`floe.error`,
/// `floe.source.topic`, `floe.source.partition`, `floe.source.offset`,
/// `floe.source.timestamp`).
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
}
