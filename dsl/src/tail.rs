//! `floe tail`: follow a Kafka topic (being written).
