//! Kafka connectors: a source whose partitions Floe assigns and whose offsets live in
//! checkpoints, with per-partition watermarks and dead letters; a sink with none,
//! at-least-once or exactly-once delivery; and a test broker for integration tests.

pub mod config;
pub mod dead_letter;
pub mod sink;
pub mod source;
pub mod testing;

pub use config::KafkaConfig;
pub use dead_letter::DeadLetter;
