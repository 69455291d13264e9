//! What a `read_committed` consumer would see of a topic, decided from the log itself rather
//! than by the broker: a transactional batch's records count only once a COMMIT marker
//! (a control batch) of the same producer id and epoch follows them in their partition;
//! an ABORT marker drops them; a transaction with no marker yet is open and not committed.
//! Records written outside transactions count as they are.
//!
//! Why not trust a consumer: neither broker that runs here hides aborted records from a
//! `read_committed` consumer (tansu writes correct markers but never fills Fetch's
//! `aborted_transactions`; librdkafka's mock writes no markers at all: see
//! `shared/KAFKA-BROKERS.md`). Why not trust the sink's `floe.*` stamps: they are the
//! bookkeeping under test (a transaction committed twice carries the same stamps twice).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::batches::{Batch, BatchRecord, Compression, ControlType};
use super::raw_fetch::RawConnection;
use crate::kafka::KafkaConfig;

/// The header of the end markers [`read_committed`] appends to each partition to know where
/// the partition ends (the test broker's high watermarks are not reliable: tansu reported 1
/// for a partition holding 43 records written in one batch). Records carrying it, from any
/// read, are left out of what a read returns.
pub const END_MARKER_HEADER: &str = "floe.test.end";

/// A committed record, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms).
    pub timestamp: i64,
    /// Its key (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Its value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The producer id of its transaction, if it was written in one.
    pub transaction: Option<i64>,
}

impl CommittedRecord {
    /// The value of the first header named `name` (`None` if absent or null).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The value of the first header named `name` as text (lossy), if present.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The value as text (lossy; empty for a tombstone).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }

    /// Where it is, for messages.
    pub fn position(&self) -> Position {
        Position {
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// A record's place in its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {} offset {}", self.partition, self.offset)
    }
}

/// Records of a transaction that no marker has closed (yet): not committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// Its partition.
    pub partition: i32,
    /// The producer id and epoch that wrote it.
    pub producer: (i64, i16),
    /// Offset of its first record in the partition.
    pub first_offset: i64,
    /// How many records it holds.
    pub records: usize,
    /// Why it is not resolved: still open at the end of the read, or left behind when the
    /// same producer id went on with a newer epoch without a marker for this one.
    pub superseded: bool,
}

/// A topic as a `read_committed` consumer would see it, with what it would not.
#[derive(Clone, Debug, Default)]
pub struct CommittedRead {
    /// The committed records (transactional ones once committed, others as they are), in
    /// partition and offset order.
    pub records: Vec<CommittedRecord>,
    /// Records of aborted transactions (left out).
    pub aborted: usize,
    /// Transactions without a marker (left out).
    pub unresolved: Vec<Unresolved>,
    /// COMMIT markers read.
    pub commits: usize,
    /// ABORT markers read.
    pub aborts: usize,
    /// Markers that closed no transaction of theirs in that partition (a transaction that
    /// wrote nothing there, or one whose records were already closed).
    pub stray_markers: usize,
    /// Data batches that were compressed (decompressed to read them).
    pub compressed_batches: usize,
}

/// An open transaction of one producer in one partition.
struct Open {
    epoch: i16,
    first_offset: i64,
    records: Vec<BatchRecord>,
}

fn is_end_marker(r: &BatchRecord) -> bool {
    r.headers.iter().any(|(n, _)| n == END_MARKER_HEADER)
}

fn committed_record(partition: i32, r: BatchRecord, transaction: Option<i64>) -> CommittedRecord {
    CommittedRecord {
        partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r.headers,
        transaction,
    }
}

/// Decides which records of one partition's `batches` (in log order, each offset once) are
/// committed, adding them and what was left out to `read`.
///
/// A marker closes its producer's open transaction only if their epochs are equal, or if
/// it is an ABORT of a newer epoch (how Kafka aborts a fenced producer's transaction). A
/// COMMIT of a newer epoch does not commit an older epoch's records: no broker here writes
/// such markers, and reading them as committed could hide a duplicate, while leaving them
/// out shows up as missing output.
pub fn resolve_partition(partition: i32, batches: Vec<Batch>, read: &mut CommittedRead) {
    let mut open: BTreeMap<i64, Open> = BTreeMap::new();
    let mut committed = Vec::new();
    for batch in batches {
        let pid = batch.producer_id;
        if batch.control {
            let Some(kind) = batch.control_type() else {
                continue;
            };
            match kind {
                ControlType::Commit => read.commits += 1,
                ControlType::Abort => read.aborts += 1,
                ControlType::Other(_) => continue,
            }
            let closes = open.get(&pid).is_some_and(|t| {
                t.epoch == batch.producer_epoch || (kind == ControlType::Abort && t.epoch < batch.producer_epoch)
            });
            match open.remove(&pid) {
                Some(t) if closes => match kind {
                    ControlType::Commit => {
                        committed.extend(t.records.into_iter().map(|r| committed_record(partition, r, Some(pid))))
                    }
                    _ => read.aborted += t.records.len(),
                },
                Some(t) => {
                    read.stray_markers += 1;
                    open.insert(pid, t);
                }
                None => read.stray_markers += 1,
            }
            continue;
        }
        if batch.compression != Compression::None {
            read.compressed_batches += 1;
        }
        let records = batch.records.into_iter().filter(|r| !is_end_marker(r));
        if !batch.transactional {
            committed.extend(records.map(|r| committed_record(partition, r, None)));
            continue;
        }
        let t = open.entry(pid).or_insert_with(|| Open {
            epoch: batch.producer_epoch,
            first_offset: batch.base_offset,
            records: Vec::new(),
        });
        if t.epoch != batch.producer_epoch {
            // The producer id went on under another epoch with no marker for this one.
            read.unresolved.push(Unresolved {
                partition,
                producer: (pid, t.epoch),
                first_offset: t.first_offset,
                records: t.records.len(),
                superseded: true,
            });
            *t = Open {
                epoch: batch.producer_epoch,
                first_offset: batch.base_offset,
                records: Vec::new(),
            };
        }
        t.records.extend(records);
    }
    for (pid, t) in open {
        read.unresolved.push(Unresolved {
            partition,
            producer: (pid, t.epoch),
            first_offset: t.first_offset,
            records: t.records.len(),
            superseded: false,
        });
    }
    committed.sort_by_key(|r| r.offset);
    read.records.extend(committed);
}

/// Reads `topic` from offset 0 of every partition to its end as a `read_committed`
/// consumer would see it (see the [module docs](self)), fetching raw record batches from
/// the broker at `raw` (plaintext Kafka protocol; a single-broker cluster). The end of each
/// partition is an end marker (header [`END_MARKER_HEADER`], outside any transaction) this
/// appends with a producer of `config` first: the read sees everything committed before it
/// was called. Fails if a partition's marker is not read within `timeout`.
pub fn read_committed(
    config: &KafkaConfig,
    raw: SocketAddr,
    topic: &str,
    timeout: Duration,
) -> io::Result<CommittedRead> {
    static READS: AtomicU64 = AtomicU64::new(0);
    let id = format!("{}-{}", std::process::id(), READS.fetch_add(1, Ordering::Relaxed));
    let deadline = Instant::now() + timeout;
    let producer: BaseProducer = config
        .client_config(&[])
        .create()
        .map_err(|e| io::Error::other(format!("a producer for the end markers of `{topic}`: {e}")))?;
    let meta = producer
        .client()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| io::Error::other(format!("metadata of `{topic}`: {e}")))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("topic `{topic}` has no partitions (does it exist?)"),
        ));
    }
    for p in &partitions {
        let end = OwnedHeaders::new().insert(Header {
            key: END_MARKER_HEADER,
            value: Some(&id),
        });
        producer
            .send(
                BaseRecord::<(), str, ()>::to(topic)
                    .partition(*p)
                    .payload(&id)
                    .headers(end),
            )
            .map_err(|(e, _)| io::Error::other(format!("an end marker for `{topic}`/{p}: {e}")))?;
    }
    producer
        .flush(timeout)
        .map_err(|e| io::Error::other(format!("end markers of `{topic}`: {e}")))?;

    let mut conn = RawConnection::connect(raw)?;
    let mut read = CommittedRead::default();
    let is_end = |r: &BatchRecord| {
        r.headers
            .iter()
            .any(|(n, v)| n == END_MARKER_HEADER && v.as_deref() == Some(id.as_bytes()))
    };
    for p in partitions {
        let batches = conn.read_partition(topic, p, Some(&is_end), deadline)?;
        resolve_partition(p, batches, &mut read);
    }
    Ok(read)
}

/// Partitions `0..partitions` of `topic` as a `read_committed` consumer would see them (see
/// the [module docs](self)), fetched raw from the broker at `raw` up to the first fetch of
/// each partition that returns nothing: without writing end markers, so a reader may use it
/// on a topic it must not write to (the exactly-once sink does, to find epochs committed
/// before a crash). Records appended while it reads may or may not be seen.
pub fn read_committed_to_end(
    raw: SocketAddr,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> io::Result<CommittedRead> {
    let deadline = Instant::now() + timeout;
    let mut conn = RawConnection::connect(raw)?;
    let mut read = CommittedRead::default();
    for p in 0..partitions {
        let batches = conn.read_partition(topic, p, None, deadline)?;
        resolve_partition(p, batches, &mut read);
    }
    Ok(read)
}

#[cfg(test)]
#[path = "committed_tests.rs"]
mod tests;
