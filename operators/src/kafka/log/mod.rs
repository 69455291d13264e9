//! A topic's log as the broker stores it, read without librdkafka: Fetch requests over plain
//! TCP (`raw_fetch`), record batches decoded with their transactional and control flags
//! (`batches`), and what a `read_committed` consumer would see of them (`committed`: the
//! records of a transaction count once a COMMIT marker of the same producer id and epoch
//! follows them).
//!
//! The brokers that run here (tansu, librdkafka's mock cluster) write the transaction markers
//! but do not hide aborted transactions from `read_committed` consumers, so this is how the
//! exactly-once sink looks for an epoch whose commit marker was lost
//! (`sink::log_check`), and how the tests' verifier
//! ([`testing::check_exactly_once`](crate::kafka::testing::check_exactly_once)) sees what was
//! committed.

mod batches;
mod committed;
mod raw_fetch;

pub use batches::{decode_batches, Batch, BatchError, BatchRecord, Compression, ControlType, Decoded, MAX_BATCH_BYTES};
pub use committed::{
    read_committed, read_committed_to_end, resolve_partition, CommittedRead, CommittedRecord, Position, Unresolved,
    END_MARKER_HEADER,
};
