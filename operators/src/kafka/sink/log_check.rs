//! The second witness of a restored epoch's commit: the output topic's committed log.
//!
//! A restored epoch is skipped when its commit marker (a consumer-group offset committed in
//! the epoch's transaction) says it was committed. On the test broker (tansu 0.6) that
//! marker is not atomic with the records: a process killed with SIGKILL while committing an
//! epoch can leave the epoch's records committed (COMMIT markers in the log) and its offset
//! commit lost, so the next run committed the epoch again (seen by the exactly-once
//! verifier in `jobs/tests/kafka_crash.rs`: the same epoch under two `floe.committed.by`).
//! So before re-committing an epoch whose marker is missing, the sink reads the output
//! topic as a `read_committed` consumer would see it (from the raw log, as the verifier
//! does) and skips the epochs whose stamps are committed there.
//!
//! The raw read speaks plaintext Kafka to the first bootstrap server: with another
//! `security.protocol`, or when the read fails (a multi-broker cluster whose partition
//! leaders are elsewhere), the marker alone decides, as it does soundly on Apache Kafka,
//! whose coordinator completes a transaction's markers and offsets together.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tracing::{info, warn};

use super::transactional::headers;
use crate::kafka::log::read_committed_to_end;
use crate::kafka::KafkaConfig;

/// How long the read of the output topic may take.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The first bootstrap server, if the configuration speaks plaintext Kafka.
fn plaintext_broker(config: &KafkaConfig) -> Option<SocketAddr> {
    let c = config.client_config(&[]);
    let protocol = c.get("security.protocol").unwrap_or("plaintext");
    if !protocol.eq_ignore_ascii_case("plaintext") {
        return None;
    }
    let first = c.get("bootstrap.servers")?.split(',').next()?.trim().to_string();
    first.to_socket_addrs().ok()?.next()
}

/// The epochs of attempt `attempt` of subtask `origin` (written as `transactional_id`)
/// committed in `topic` (`partitions` partitions), or `None` if the log could not be read
/// (the reason is logged).
pub(crate) fn committed_epochs(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    transactional_id: &str,
    origin: usize,
    attempt: u64,
) -> Option<BTreeSet<u64>> {
    let Some(raw) = plaintext_broker(config) else {
        info!(
            topic,
            "not plaintext Kafka: restored epochs are checked by their commit markers only"
        );
        return None;
    };
    let read = match read_committed_to_end(raw, topic, partitions, READ_TIMEOUT) {
        Ok(read) => read,
        Err(e) => {
            warn!(topic, error = %e, "could not read the output topic: restored epochs are checked by their commit markers only");
            return None;
        }
    };
    let (origin, attempt) = (origin.to_string(), format!("{attempt:x}"));
    let epochs = read
        .records
        .iter()
        .filter(|r| {
            r.header(headers::TXN) == Some(transactional_id.as_bytes())
                && r.header(headers::SUBTASK) == Some(origin.as_bytes())
                && r.header(headers::ATTEMPT) == Some(attempt.as_bytes())
        })
        .filter_map(|r| std::str::from_utf8(r.header(headers::EPOCH)?).ok()?.parse().ok())
        .collect();
    Some(epochs)
}
