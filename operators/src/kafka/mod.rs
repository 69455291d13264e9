//! Kafka connectors: a source whose partitions Floe assigns and whose offsets live in
//! checkpoints, with per-partition watermarks and dead letters; a sink with none,
//! at-least-once or exactly-once delivery; a reader of a topic's raw committed log (`log`);
//! and test brokers and the exactly-once verifier for integration tests (`testing`).

pub mod config;
pub mod dead_letter;
pub mod log;
mod rate_limit;
pub mod sink;
pub mod source;
pub mod testing;
pub mod try_map;

pub use config::KafkaConfig;
pub use dead_letter::DeadLetter;

/// Name of the dead-letter counters in the metrics registry (label `operator`): records that
/// did not deserialize or that a user function rejected.
pub const DEAD_LETTERS_METRIC: &str = "floe_dead_letters_total";
