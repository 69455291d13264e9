//! Jobs shipped with Floe, and the data they run on.
//!
//! - `fails-per-minute`: failed payments per user per minute of event time, from a JSON-lines
//!   file (generated on first run), with late data and malformed lines set aside.
//! - `kafka-counts`: running counts per key, Kafka to Kafka, exactly once, with a DLQ.
//! - `payments-gen`: writes generated payments to a Kafka topic.

pub mod fraud;
pub mod generator;
pub mod kafka_args;
pub mod payments;
