//! Kafka connectors: a source whose partitions Floe assigns and whose offsets live in
//! checkpoints, with per-partition watermarks and dead letters; a sink with none,
//! at-least-once or exactly-once delivery; and a test broker for integration tests.

pub mod config;
pub mod testing;

pub use config::KafkaConfig;
