//! Kafka record batches (the v2 log format, "magic 2") decoded from the bytes a broker
//! returns in a Fetch response: the batch header (producer id and epoch, transactional and
//! control flags, compression) and its records (offset, timestamp, key, value, headers),
//! decompressed if the producer compressed them (gzip, snappy, lz4, zstd).
//!
//! The bytes come from a broker, so nothing here trusts a length: every length is checked
//! against the bytes that are there, a batch's CRC is verified, and decompression stops at
//! [`MAX_BATCH_BYTES`]. A batch cut off at the end of a response (brokers return partial
//! batches when a fetch's byte limit falls inside one) is left for the next fetch.

use std::fmt;
use std::io::Read;

/// Decompressed size beyond which a batch is refused (a broker limits batches to about
/// 1 MB by default; 256 MiB leaves room for any configuration without letting a corrupt or
/// hostile batch take the machine's memory).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// Size of the batch header fields before the records, from the base offset to the
/// record count included.
const HEADER_BYTES: usize = 61;
/// Where the CRC-covered part starts (the attributes), from the start of the batch.
const CRC_FROM: usize = 21;

/// How a batch's records are compressed (attributes bits 0–2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (raw, as librdkafka writes it, or in the Java client's framing).
    Snappy,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// What a control record says (its key's type): the end of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// The transaction was aborted (type 0).
    Abort,
    /// The transaction was committed (type 1).
    Commit,
    /// A control type this reader does not know (the number).
    Other(i16),
}

/// One record of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp (ms), as the batch's timestamp type says.
    pub timestamp: i64,
    /// Key (`None`: null).
    pub key: Option<Vec<u8>>,
    /// Value (`None`: null, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order (names may repeat).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// One decoded record batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// The producer id (-1 for a producer that is neither idempotent nor transactional).
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Whether the records belong to a transaction.
    pub transactional: bool,
    /// Whether this is a control batch (a transaction marker).
    pub control: bool,
    /// How the records were compressed.
    pub compression: Compression,
    /// The records.
    pub records: Vec<BatchRecord>,
}

impl Batch {
    /// The offset after this batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
            .saturating_add(1)
    }

    /// For a control batch, what its (first) control record says.
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.control {
            return None;
        }
        let key = self.records.first()?.key.as_deref()?;
        let kind = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
        Some(match kind {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            n => ControlType::Other(n),
        })
    }
}

/// Why bytes are not a valid record batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Offset of the batch (its base offset, if it could be read).
    pub base_offset: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base_offset {
            Some(o) => write!(f, "record batch at offset {o}: {}", self.reason),
            None => write!(f, "record batch: {}", self.reason),
        }
    }
}

impl std::error::Error for BatchError {}

/// Batches decoded from the front of a fetched byte string.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The whole batches, in order.
    pub batches: Vec<Batch>,
    /// Bytes at the end that were only part of a batch (0 if none).
    pub partial: usize,
}

/// Decodes the record batches in `bytes` (a Fetch response's records of one partition).
/// A batch cut off at the end is not an error: see [`Decoded::partial`].
pub fn decode_batches(bytes: &[u8]) -> Result<Decoded, BatchError> {
    let mut out = Decoded::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        // Base offset (8) and batch length (4) say how long the batch is.
        let Some(length) = rest.get(8..12) else {
            out.partial = rest.len();
            break;
        };
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        let base_offset = i64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
        let err = |reason: String| BatchError {
            base_offset: Some(base_offset),
            reason,
        };
        let length = usize::try_from(length).map_err(|_| err(format!("negative batch length {length}")))?;
        let Some(total) = length.checked_add(12) else {
            return Err(err(format!("batch length {length} overflows")));
        };
        if total > rest.len() {
            out.partial = rest.len();
            break;
        }
        out.batches.push(decode_batch(&rest[..total]).map_err(err)?);
        rest = &rest[total..];
    }
    Ok(out)
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| format!("{n} bytes needed at byte {}, {} left", self.at, self.remaining()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn i8(&mut self) -> Result<i8, String> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A zigzag varint of at most 10 bytes (Kafka's varlong; varints are the same encoding).
    fn varlong(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.array::<1>()?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn varint(&mut self) -> Result<i32, String> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| format!("varint {v} out of range"))
    }

    /// Bytes prefixed by a varint length (-1: null).
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(format!("negative length {n}")),
            n => Ok(Some(self.take(n as usize)?)),
        }
    }
}

fn decode_batch(bytes: &[u8]) -> Result<Batch, String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "{} bytes, shorter than a batch header ({HEADER_BYTES})",
            bytes.len()
        ));
    }
    let mut r = Reader::new(bytes);
    let base_offset = r.i64()?;
    let _length = r.i32()?;
    let _leader_epoch = r.i32()?;
    let magic = r.i8()?;
    if magic != 2 {
        return Err(format!(
            "magic {magic}: only the v2 record format (magic 2) is supported"
        ));
    }
    let crc = r.u32()?;
    let actual = crc32c::crc32c(&bytes[CRC_FROM..]);
    if crc != actual {
        return Err(format!(
            "CRC mismatch: the batch says {crc:#010x}, its bytes give {actual:#010x}"
        ));
    }
    let attributes = r.i16()?;
    let compression = match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        n => return Err(format!("unknown compression {n}")),
    };
    let transactional = attributes & 0x10 != 0;
    let control = attributes & 0x20 != 0;
    let last_offset_delta = r.i32()?;
    let base_timestamp = r.i64()?;
    let _max_timestamp = r.i64()?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let _base_sequence = r.i32()?;
    let count = r.i32()?;
    let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    let payload = &bytes[r.at..];
    let inflated;
    let records_bytes = match compression {
        Compression::None => payload,
        c => {
            inflated = decompress(c, payload, MAX_BATCH_BYTES)?;
            inflated.as_slice()
        }
    };
    let mut rr = Reader::new(records_bytes);
    // Each record takes at least 7 bytes: never reserve more than the bytes can hold.
    let mut records = Vec::with_capacity(count.min(rr.remaining() / 7));
    for i in 0..count {
        let record =
            decode_record(&mut rr, base_offset, base_timestamp).map_err(|e| format!("record {i} of {count}: {e}"))?;
        records.push(record);
    }
    if rr.remaining() != 0 {
        return Err(format!(
            "{} bytes after the {count} records the header announces",
            rr.remaining()
        ));
    }
    Ok(Batch {
        base_offset,
        last_offset_delta,
        producer_id,
        producer_epoch,
        transactional,
        control,
        compression,
        records,
    })
}

fn decode_record(r: &mut Reader<'_>, base_offset: i64, base_timestamp: i64) -> Result<BatchRecord, String> {
    let length = r.varint()?;
    let length = usize::try_from(length).map_err(|_| format!("negative record length {length}"))?;
    let mut r = Reader::new(r.take(length)?);
    let _attributes = r.i8()?;
    let timestamp = base_timestamp.wrapping_add(r.varlong()?);
    let offset = base_offset.wrapping_add(i64::from(r.varint()?));
    let key = r.nullable_bytes()?.map(<[u8]>::to_vec);
    let value = r.nullable_bytes()?.map(<[u8]>::to_vec);
    let n = r.varint()?;
    let n = usize::try_from(n).map_err(|_| format!("negative header count {n}"))?;
    // A header takes at least 2 bytes.
    let mut headers = Vec::with_capacity(n.min(r.remaining() / 2));
    for _ in 0..n {
        let name = r
            .nullable_bytes()?
            .ok_or_else(|| "a header with a null name".to_string())?;
        let name = std::str::from_utf8(name)
            .map_err(|_| format!("a header name that is not UTF-8: {name:?}"))?
            .to_string();
        headers.push((name, r.nullable_bytes()?.map(<[u8]>::to_vec)));
    }
    if r.remaining() != 0 {
        return Err(format!("{} bytes beyond its fields", r.remaining()));
    }
    Ok(BatchRecord {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

/// Reads all of `reader`, failing past `limit` bytes.
fn read_bounded(reader: impl Read, what: &str, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.len() > limit {
        return Err(format!("{what}: more than {limit} bytes decompressed"));
    }
    Ok(out)
}

/// The Java client's Snappy framing ("xerial"): a 16-byte header, then blocks each
/// prefixed by its compressed length.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let len = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if out.len().saturating_add(len) > limit {
        return Err(format!("snappy: more than {limit} bytes decompressed"));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    Ok(())
}

/// The records of a compressed batch, decompressed, failing past `limit` bytes.
fn decompress(c: Compression, bytes: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    match c {
        Compression::None => read_bounded(bytes, "records", limit),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(bytes), "gzip", limit),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(bytes), "lz4", limit),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder, "zstd", limit)
        }
        Compression::Snappy => {
            let mut out = Vec::new();
            if !bytes.starts_with(XERIAL_MAGIC) {
                snappy_block(bytes, &mut out, limit)?;
                return Ok(out);
            }
            let mut r = Reader::new(bytes);
            r.take(16)?;
            while r.remaining() > 0 {
                let n = r.u32()? as usize;
                snappy_block(r.take(n)?, &mut out, limit)?;
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
#[path = "batches_tests.rs"]
mod tests;
