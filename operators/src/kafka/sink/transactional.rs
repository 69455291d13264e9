//! Exactly-once delivery as a write-ahead two-phase commit that librdkafka can do: epochs
//! of serialized records kept in checkpoints until their checkpoint completes, then written
//! in one Kafka transaction each, together with an offset-commit marker that records the
//! epoch as committed (see the [sink's module docs](super) for the protocol).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use floe_checkpoints::{decode, encode};
use floe_runtime::{Result, RuntimeError, UserError};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::producer::{kafka_error, OutRecord, SinkProducer, BROKER_TIMEOUT};
use super::KafkaSinkMetrics;
use crate::kafka::KafkaConfig;

/// Names of the headers that exactly-once delivery stamps on every record: where the record
/// came from and which run committed it (see [`EosStamp`]).
pub mod headers {
    /// The transactional id that wrote the record (`<prefix>-<subtask>`).
    pub const TXN: &str = "floe.txn";
    /// The subtask whose input the record came from (decimal).
    pub const SUBTASK: &str = "floe.subtask";
    /// The attempt (run) of the job that read that input (hexadecimal).
    pub const ATTEMPT: &str = "floe.attempt";
    /// The checkpoint (epoch) whose completion committed the record (decimal).
    pub const EPOCH: &str = "floe.epoch";
    /// The record's index within its subtask's epoch, from 0 (decimal).
    pub const SEQ: &str = "floe.seq";
    /// The attempt (run) of the job that committed the record's transaction (hexadecimal):
    /// the same as [`ATTEMPT`] unless a restored run committed an epoch that a crash left
    /// uncommitted. Two records with the same subtask, attempt, epoch and seq are the same
    /// output; if they were ever both committed, this header tells the two commits apart.
    pub const COMMITTED_BY: &str = "floe.committed.by";
}

/// Where a record written with exactly-once delivery came from, and which run committed it,
/// read back from its [`headers`]. These are the sink's own bookkeeping: they say where to
/// look, but checking exactly-once by them is circular (a transaction committed twice
/// carries the same stamps twice). Floe's tests check the committed log instead
/// (`floe_operators::kafka::log::read_committed`, and the tests' ledger).
///
/// ```
/// use floe_operators::kafka::sink::EosStamp;
/// use rdkafka::message::{Header, OwnedHeaders};
/// let h = OwnedHeaders::new()
///     .insert(Header { key: "floe.txn", value: Some("p-0") })
///     .insert(Header { key: "floe.subtask", value: Some("0") })
///     .insert(Header { key: "floe.attempt", value: Some("1f") })
///     .insert(Header { key: "floe.epoch", value: Some("3") })
///     .insert(Header { key: "floe.seq", value: Some("12") })
///     .insert(Header { key: "floe.committed.by", value: Some("20") });
/// let stamp = EosStamp::from_headers(&h).unwrap();
/// assert_eq!((stamp.subtask, stamp.attempt, stamp.epoch, stamp.seq), (0, 0x1f, 3, 12));
/// assert_eq!(stamp.committed_by, Some(0x20), "committed by a restored run");
/// assert_eq!(EosStamp::from_headers(&stamp.to_headers()), Some(stamp));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EosStamp {
    /// The transactional id that wrote the record.
    pub transactional_id: String,
    /// The subtask whose input the record came from.
    pub subtask: usize,
    /// The attempt of the job that read that input.
    pub attempt: u64,
    /// The checkpoint whose completion committed the record.
    pub epoch: u64,
    /// The record's index within its subtask's epoch.
    pub seq: u64,
    /// The attempt that committed the record's transaction (`None` for records written
    /// before Floe stamped it).
    pub committed_by: Option<u64>,
}

impl EosStamp {
    /// The stamp in a record's headers, if it has the five of its origin.
    pub fn from_headers<H: Headers>(headers: &H) -> Option<EosStamp> {
        let (mut txn, mut subtask, mut attempt, mut epoch, mut seq) = (None, None, None, None, None);
        let mut committed_by = None;
        for h in headers.iter() {
            let Some(v) = h.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match h.key {
                headers::TXN => txn = Some(v.to_string()),
                headers::SUBTASK => subtask = v.parse().ok(),
                headers::ATTEMPT => attempt = u64::from_str_radix(v, 16).ok(),
                headers::EPOCH => epoch = v.parse().ok(),
                headers::SEQ => seq = v.parse().ok(),
                headers::COMMITTED_BY => committed_by = u64::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        Some(EosStamp {
            transactional_id: txn?,
            subtask: subtask?,
            attempt: attempt?,
            epoch: epoch?,
            seq: seq?,
            committed_by,
        })
    }

    /// The stamp as record headers, as [`EosStamp::from_headers`] reads them: for tests and
    /// tools that write records the way the exactly-once sink does (the sink itself builds
    /// them without allocating a stamp per record).
    pub fn to_headers(&self) -> OwnedHeaders {
        let committed_by = self.committed_by.map(|c| format!("{c:x}"));
        [
            (headers::TXN, self.transactional_id.clone()),
            (headers::SUBTASK, self.subtask.to_string()),
            (headers::ATTEMPT, format!("{:x}", self.attempt)),
            (headers::EPOCH, self.epoch.to_string()),
            (headers::SEQ, self.seq.to_string()),
        ]
        .into_iter()
        .chain(committed_by.map(|c| (headers::COMMITTED_BY, c)))
        .fold(OwnedHeaders::new_with_capacity(6), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
    }
}

/// Where a record is in its [`EpochBuffer`]: lengths only, as the bytes of its value, key
/// and headers (name, value, ...) follow each other and the records follow each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Buffered {
    value: Option<u32>,
    key: Option<u32>,
    partition: Option<i32>,
    timestamp: Option<i64>,
    /// Number of headers (their lengths are the next ones of `EpochBuffer::headers`).
    headers: u32,
}

/// One epoch's serialized records: their bytes back to back in one buffer (no allocation
/// per record), and the lengths that say where each key, value and header is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EpochBuffer {
    #[serde(with = "raw_bytes")]
    bytes: Vec<u8>,
    records: Vec<Buffered>,
    /// Lengths of header names and values.
    headers: Vec<(u32, u32)>,
}

/// Serializes a byte buffer as one byte string (not as a sequence of numbers, which
/// bincode would encode byte by byte).
mod raw_bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// A buffered record, borrowed from its [`EpochBuffer`].
pub(crate) struct BufferedRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

fn length(n: usize) -> std::result::Result<u32, UserError> {
    u32::try_from(n).map_err(|_| format!("a key, value or header of {n} bytes is too large for Kafka").into())
}

impl EpochBuffer {
    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of keys, values and headers held.
    pub(crate) fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a record whose value `serialize` appends to the buffer (or which has a null
    /// value if `null`). On error nothing is appended.
    pub(crate) fn push(
        &mut self,
        key: Option<&[u8]>,
        null: bool,
        serialize: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), UserError>,
        partition: Option<i32>,
        timestamp: Option<i64>,
        headers: &[(String, Vec<u8>)],
    ) -> std::result::Result<(), UserError> {
        let (mark, marked_headers) = (self.bytes.len(), self.headers.len());
        let appended = self.append(key, null, serialize, headers);
        match appended {
            Ok((value, key)) => {
                self.records.push(Buffered {
                    value,
                    key,
                    partition,
                    timestamp,
                    headers: (self.headers.len() - marked_headers) as u32,
                });
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(mark);
                self.headers.truncate(marked_headers);
                Err(e)
            }
        }
    }

    /// Appends value, key and headers; returns the value's and the key's lengths.
    fn append(
        &mut self,
        key: Option<&[u8]>,
        null: bool,
        serialize: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), UserError>,
        headers: &[(String, Vec<u8>)],
    ) -> std::result::Result<(Option<u32>, Option<u32>), UserError> {
        let start = self.bytes.len();
        let value = if null {
            None
        } else {
            serialize(&mut self.bytes)?;
            Some(length(self.bytes.len() - start)?)
        };
        let key_len = key.map(|k| length(k.len())).transpose()?;
        self.bytes.extend_from_slice(key.unwrap_or_default());
        for (name, v) in headers {
            self.headers.push((length(name.len())?, length(v.len())?));
            self.bytes.extend_from_slice(name.as_bytes());
            self.bytes.extend_from_slice(v);
        }
        Ok((value, key_len))
    }

    /// The records, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = BufferedRecord<'_>> + '_ {
        let mut at = 0usize;
        let mut header = 0usize;
        let mut take = move |len: u32| {
            let from = at;
            at += len as usize;
            self.bytes.get(from..at).unwrap_or_default()
        };
        self.records.iter().map(move |r| {
            let value = r.value.map(&mut take);
            let key = r.key.map(&mut take);
            let lengths = self
                .headers
                .get(header..header + r.headers as usize)
                .unwrap_or_default();
            header += r.headers as usize;
            let headers = lengths
                .iter()
                .map(|(n, v)| (std::str::from_utf8(take(*n)).unwrap_or_default(), take(*v)))
                .collect();
            BufferedRecord {
                key,
                value,
                partition: r.partition,
                timestamp: r.timestamp,
                headers,
            }
        })
    }
}

/// Records of a checkpoint (epoch) that wait for its completion to be written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingEpoch {
    pub epoch: u64,
    pub records: EpochBuffer,
}

const ITEM_VERSION: u8 = 1;

/// A subtask's pending epochs as one operator-state item of its snapshot.
#[derive(Debug, Deserialize)]
pub(crate) struct PendingItem {
    version: u8,
    /// The transactional-id prefix the epochs were written under.
    pub prefix: String,
    /// The subtask that wrote them.
    pub origin: usize,
    /// The attempt that wrote them.
    pub attempt: u64,
    pub epochs: Vec<PendingEpoch>,
}

#[derive(Serialize)]
struct PendingItemRef<'a> {
    version: u8,
    prefix: &'a str,
    origin: usize,
    attempt: u64,
    epochs: &'a [PendingEpoch],
}

/// Encodes a subtask's pending epochs (all of them in one item, even none: a subtask's
/// epochs must be committed in order by one subtask, and with one item per old subtask,
/// old subtask `s` is dealt to new subtask `s % parallelism`, i.e. to itself if it still
/// exists).
pub(crate) fn encode_pending(prefix: &str, origin: usize, attempt: u64, epochs: &[PendingEpoch]) -> Result<Vec<u8>> {
    Ok(encode(&PendingItemRef {
        version: ITEM_VERSION,
        prefix,
        origin,
        attempt,
        epochs,
    })?)
}

/// Decodes an item of [`encode_pending`].
pub(crate) fn decode_pending(item: &[u8]) -> Result<PendingItem> {
    let item: PendingItem = decode(item)?;
    if item.version != ITEM_VERSION {
        return Err(RuntimeError::Internal(format!(
            "Kafka sink state of version {} (this Floe reads version {ITEM_VERSION})",
            item.version
        )));
    }
    Ok(item)
}

/// The transactional id of subtask `subtask`.
pub(crate) fn transactional_id(prefix: &str, subtask: usize) -> String {
    format!("{prefix}-{subtask}")
}

/// The consumer group whose committed offset marks the epochs that subtask `origin` of
/// attempt `attempt` has committed. The attempt is part of the name (and also the offset's
/// metadata, which not every broker keeps: tansu drops it), so a marker left by another run
/// under the same prefix is never mistaken for this one's.
pub(crate) fn marker_group(prefix: &str, origin: usize, attempt: u64) -> String {
    format!("floe-eos-{prefix}-{origin}-{attempt:x}")
}

/// A commit marker as read back: the last committed epoch and, if the broker kept the
/// offset's metadata, the attempt that committed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub epoch: i64,
    pub attempt: Option<u64>,
}

/// Whether epoch `epoch` of attempt `attempt` was committed, given the marker of its
/// group: epochs commit in order, so any marker at or past it means yes.
pub(crate) fn already_committed(marker: Option<Marker>, attempt: u64, epoch: u64) -> bool {
    marker.is_some_and(|m| m.epoch >= 0 && m.epoch as u64 >= epoch && m.attempt.is_none_or(|a| a == attempt))
}

/// A consumer of a marker group (never joining it): reads the marker, and gives the group
/// metadata that transactions commit the marker with.
pub(crate) struct MarkerConsumer {
    consumer: BaseConsumer,
    group: String,
}

impl MarkerConsumer {
    pub(crate) fn new(config: &KafkaConfig, group: String) -> Result<Self> {
        let consumer = config
            .client_config(&[])
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            // Asks the broker for stable offsets (none pending in a transaction).
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| kafka_error(format!("creating a consumer for marker group `{group}`"), e))?;
        Ok(MarkerConsumer { consumer, group })
    }

    fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        self.consumer.group_metadata().ok_or_else(|| {
            RuntimeError::Internal(format!("no consumer group metadata for marker group `{}`", self.group))
        })
    }

    /// The marker for `topic`, if any epoch was committed.
    pub(crate) fn read(&self, topic: &str) -> Result<Option<Marker>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let got = self
            .consumer
            .committed_offsets(tpl, BROKER_TIMEOUT)
            .map_err(|e| kafka_error(format!("reading the commit marker of group `{}`", self.group), e))?;
        let Some(e) = got.find_partition(topic, 0) else {
            return Ok(None);
        };
        Ok(match e.offset() {
            Offset::Offset(epoch) => Some(Marker {
                epoch,
                attempt: u64::from_str_radix(e.metadata(), 16).ok(),
            }),
            _ => None,
        })
    }
}

/// The header values that are the same for a whole epoch.
pub(crate) struct Stamp<'a> {
    pub transactional_id: &'a str,
    pub subtask: String,
    pub attempt: String,
    pub epoch: String,
    pub committed_by: String,
}

impl<'a> Stamp<'a> {
    /// The stamp of epoch `epoch` of subtask `subtask` in attempt `attempt`, committed by
    /// attempt `committed_by` (a restored run commits an earlier attempt's epochs).
    pub(crate) fn new(transactional_id: &'a str, subtask: usize, attempt: u64, epoch: u64, committed_by: u64) -> Self {
        Stamp {
            transactional_id,
            subtask: subtask.to_string(),
            attempt: format!("{attempt:x}"),
            epoch: epoch.to_string(),
            committed_by: format!("{committed_by:x}"),
        }
    }

    /// The user's headers followed by the six stamp headers of record `seq`.
    pub(crate) fn headers(&self, user: &[(&str, &[u8])], seq: u64, scratch: &mut String) -> OwnedHeaders {
        scratch.clear();
        let _ = write!(scratch, "{seq}");
        let mut h = OwnedHeaders::new_with_capacity(user.len() + 6);
        for (name, value) in user {
            h = h.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        for (key, value) in [
            (headers::TXN, self.transactional_id),
            (headers::SUBTASK, self.subtask.as_str()),
            (headers::ATTEMPT, self.attempt.as_str()),
            (headers::EPOCH, self.epoch.as_str()),
            (headers::SEQ, scratch.as_str()),
            (headers::COMMITTED_BY, self.committed_by.as_str()),
        ] {
            h = h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        h
    }
}

/// What one epoch's transaction writes.
pub(crate) struct EpochCommit<'a> {
    pub topic: &'a str,
    pub transactional_id: &'a str,
    pub origin: usize,
    /// The attempt that wrote the epoch (its marker group's).
    pub attempt: u64,
    /// The attempt that commits it now.
    pub committer: u64,
    pub epoch: &'a PendingEpoch,
}

/// Writes an epoch in one transaction with its commit marker: begin, produce every record
/// (stamped), send the marker offset (output topic, partition 0, offset = epoch, metadata =
/// attempt) to the transaction for the marker group, commit. On failure the transaction is
/// aborted and the error returned: the epoch stays in the checkpoint, and the restarted job
/// commits it.
pub(crate) fn commit_epoch(
    producer: &mut SinkProducer,
    marker: &MarkerConsumer,
    c: &EpochCommit<'_>,
    metrics: &KafkaSinkMetrics,
) -> Result<()> {
    let what = format!(
        "committing epoch {} of subtask {} (attempt {:x}) to Kafka topic `{}` as `{}`",
        c.epoch.epoch, c.origin, c.attempt, c.topic, c.transactional_id
    );
    let txn = |e| kafka_error(what.clone(), e);
    producer.inner().begin_transaction().map_err(txn)?;
    let mut fenced = false;
    let written = write_and_commit(producer, marker, c, &what, &mut fenced);
    if let Err(e) = written {
        if fenced {
            // A newer producer with this transactional id exists (the job was restored while
            // this one still ran): it has aborted or will abort this transaction.
            warn!(what, "this Kafka producer was fenced by a newer one");
        } else {
            abort(producer, &what);
        }
        return Err(e);
    }
    let n = c.epoch.records.len() as u64;
    metrics.counters.written.fetch_add(n, Ordering::Relaxed);
    metrics.counters.transactions.fetch_add(1, Ordering::Relaxed);
    debug!(
        epoch = c.epoch.epoch,
        origin = c.origin,
        records = n,
        "Kafka transaction committed"
    );
    Ok(())
}

fn write_and_commit(
    producer: &mut SinkProducer,
    marker: &MarkerConsumer,
    c: &EpochCommit<'_>,
    what: &str,
    fenced: &mut bool,
) -> Result<()> {
    let stamp = Stamp::new(c.transactional_id, c.origin, c.attempt, c.epoch.epoch, c.committer);
    let mut scratch = String::new();
    for (seq, r) in c.epoch.records.iter().enumerate() {
        producer.send(OutRecord {
            key: r.key,
            value: r.value,
            partition: r.partition,
            timestamp: r.timestamp,
            headers: Some(stamp.headers(&r.headers, seq as u64, &mut scratch)),
        })?;
        if seq % 1024 == 1023 {
            producer.poll();
        }
    }
    let offset = i64::try_from(c.epoch.epoch)
        .map_err(|_| RuntimeError::Internal(format!("epoch {} does not fit a Kafka offset", c.epoch.epoch)))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(c.topic, 0, Offset::Offset(offset))
        .map_err(|e| kafka_error(what, e))?;
    if let Some(mut e) = tpl.find_partition(c.topic, 0) {
        e.set_metadata(format!("{:x}", c.attempt));
    }
    let mut txn = |e: KafkaError| {
        *fenced |= is_fenced(&e);
        kafka_error(what, e)
    };
    producer
        .inner()
        .send_offsets_to_transaction(&tpl, &marker.group_metadata()?, BROKER_TIMEOUT)
        .map_err(&mut txn)?;
    let mut tries = 0;
    floe_failpoints::failpoint!("kafka.before-commit", c.topic);
    loop {
        match producer.inner().commit_transaction(BROKER_TIMEOUT) {
            Ok(()) => break,
            Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => {
                tries += 1;
                warn!(error = %e, tries, "retrying the commit of a Kafka transaction");
            }
            Err(e) => return Err(txn(e)),
        }
    }
    floe_failpoints::failpoint!("kafka.after-commit", c.topic);
    // A failed record fails the commit; this catches any the callbacks saw too.
    producer.poll();
    producer.check()
}

/// Whether `e` says that a newer producer with the same transactional id took over.
fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch | RDKafkaErrorCode::Fenced)
    )
}

fn abort(producer: &SinkProducer, what: &str) {
    let p = producer.inner();
    if let Some((code, reason)) = p.client().fatal_error() {
        // Fenced by a newer producer, or otherwise unusable: the broker aborts the
        // transaction (when the new producer initializes, or at `transaction.timeout.ms`).
        warn!(what, %code, reason, "Kafka producer failed for good; its transaction is left to the broker");
        return;
    }
    p.purge(PurgeConfig::default().queue().inflight());
    let _ = p.flush(std::time::Duration::from_secs(5));
    match p.abort_transaction(BROKER_TIMEOUT) {
        Ok(()) => info!(what, "Kafka transaction aborted"),
        Err(e) => warn!(what, error = %e, "could not abort the Kafka transaction (a new producer fences it)"),
    }
}

/// Says which restored epochs an error of their recovery is about (keeping its fault).
pub(crate) fn recovery_error(origin: usize, attempt: u64, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::External { context, source } => RuntimeError::External {
            context: format!(
                "committing the restored pending epochs of subtask {origin} (attempt {attempt:x}): {context}"
            ),
            source,
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> EpochBuffer {
        let mut b = EpochBuffer::default();
        let json = |v: &str| {
            let v = v.to_string();
            move |out: &mut Vec<u8>| -> std::result::Result<(), UserError> {
                out.extend_from_slice(v.as_bytes());
                Ok(())
            }
        };
        b.push(
            Some(b"k1"),
            false,
            json("v1"),
            Some(2),
            Some(10),
            &[("h".into(), b"x".to_vec())],
        )
        .unwrap();
        b.push(None, true, json("ignored"), None, None, &[]).unwrap();
        b.push(Some(b""), false, json(""), None, Some(11), &[]).unwrap();
        b
    }

    #[test]
    fn epoch_buffers_keep_records_in_one_allocation_and_survive_snapshots() {
        let b = epoch();
        assert_eq!(b.len(), 3);
        let rs: Vec<_> = b.iter().collect();
        assert_eq!((rs[0].key, rs[0].value), (Some(&b"k1"[..]), Some(&b"v1"[..])));
        assert_eq!(rs[0].headers, vec![("h", &b"x"[..])]);
        assert_eq!((rs[0].partition, rs[0].timestamp), (Some(2), Some(10)));
        assert_eq!((rs[1].key, rs[1].value), (None, None), "a tombstone");
        assert_eq!(
            (rs[2].key, rs[2].value),
            (Some(&b""[..]), Some(&b""[..])),
            "empty is not null"
        );
        let pending = vec![PendingEpoch { epoch: 4, records: b }];
        let item = decode_pending(&encode_pending("p", 1, 0xab, &pending).unwrap()).unwrap();
        assert_eq!((item.prefix.as_str(), item.origin, item.attempt), ("p", 1, 0xab));
        assert_eq!(item.epochs, pending);
    }

    #[test]
    fn a_failing_serializer_leaves_the_buffer_as_it_was() {
        let mut b = epoch();
        let before = b.clone();
        let err = b.push(
            Some(b"k"),
            false,
            |out| {
                out.extend_from_slice(b"half");
                Err("no".into())
            },
            None,
            None,
            &[],
        );
        assert!(err.is_err());
        assert_eq!(b, before);
    }

    #[test]
    fn marker_decides_which_epochs_were_committed() {
        let m = |epoch, attempt| Some(Marker { epoch, attempt });
        assert!(!already_committed(None, 7, 1), "no marker: nothing committed");
        assert!(already_committed(m(5, Some(7)), 7, 5));
        assert!(already_committed(m(5, Some(7)), 7, 3), "epochs commit in order");
        assert!(!already_committed(m(5, Some(7)), 7, 6));
        assert!(!already_committed(m(5, Some(8)), 7, 5), "another attempt's marker");
        assert!(
            already_committed(m(5, None), 7, 5),
            "brokers that drop metadata: the group says the attempt"
        );
        assert!(!already_committed(m(-1, None), 7, 0));
        assert_eq!(marker_group("job-sink-3", 2, 0xab), "floe-eos-job-sink-3-2-ab");
        assert_eq!(transactional_id("job-sink-3", 2), "job-sink-3-2");
    }

    #[test]
    fn stamps_follow_user_headers_and_read_back() {
        let stamp = Stamp::new("p-1", 1, 0xbeef, 9, 0xbef0);
        let mut scratch = String::new();
        let h = stamp.headers(&[("user", b"u")], 42, &mut scratch);
        assert_eq!(h.count(), 7);
        assert_eq!(h.get(0).key, "user");
        assert_eq!(
            EosStamp::from_headers(&h),
            Some(EosStamp {
                transactional_id: "p-1".into(),
                subtask: 1,
                attempt: 0xbeef,
                epoch: 9,
                seq: 42,
                committed_by: Some(0xbef0),
            })
        );
        let partial = OwnedHeaders::new().insert(Header {
            key: headers::EPOCH,
            value: Some("1"),
        });
        assert_eq!(EosStamp::from_headers(&partial), None);
    }
}
