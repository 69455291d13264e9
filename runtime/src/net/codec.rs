//! How elements cross a TCP connection: a batch codec per edge (typed by the DSL) and the
//! frames around it.
//!
//! A frame is a little-endian `u32` length (of what follows), a tag byte and a payload:
//! `0` data (the batch, bincode), `1` watermark (`i64`), `2` idle, `3` barrier (bincode),
//! `4` end of data, `5` end of stream.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use crate::element::{downcast_batch, Batch, CheckpointBarrier, Data, Message, Record};
use crate::error::{Result, RuntimeError};

/// Turns the batches of one edge into bytes and back.
pub trait BatchCodec: Send + Sync {
    /// Appends the encoding of `batch` to `out`.
    fn encode(&self, batch: Batch, out: &mut Vec<u8>) -> Result<()>;
    /// Reads a batch back.
    fn decode(&self, bytes: &[u8]) -> Result<Batch>;
}

/// The codec of an edge carrying `T`: bincode over serde.
pub struct BincodeCodec<T>(PhantomData<fn() -> T>);

impl<T> BincodeCodec<T> {
    /// The codec.
    pub fn new() -> Self {
        BincodeCodec(PhantomData)
    }
}

impl<T> Default for BincodeCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data> BatchCodec for BincodeCodec<T> {
    fn encode(&self, batch: Batch, out: &mut Vec<u8>) -> Result<()> {
        let records = downcast_batch::<T>(batch)?;
        bincode::serialize_into(out, &records).map_err(|e| {
            RuntimeError::Internal(format!(
                "records of `{}` cannot be sent to another worker: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<Batch> {
        let records: Vec<Record<T>> = bincode::deserialize(bytes).map_err(|e| {
            RuntimeError::Internal(format!(
                "records of `{}` from another worker do not decode: {e} (are all workers running the same binary?)",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(Box::new(records))
    }
}

const DATA: u8 = 0;
const WATERMARK: u8 = 1;
const IDLE: u8 = 2;
const BARRIER: u8 = 3;
const END_OF_DATA: u8 = 4;
const END_OF_STREAM: u8 = 5;

/// The largest data frame (one batch) by default: a batch of 1024 records of a few hundred
/// bytes each takes a few hundred KB; this leaves room for batches a hundred times larger.
/// Jobs set their own with `ExecutionConfig::max_frame_bytes`.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
/// The largest control message (a checkpoint acknowledgement lists a task's state files,
/// the SSTs of each included).
pub(crate) const CONTROL_MAX: usize = 8 << 20;
/// Bytes a frame's buffer grows by before they arrived, at most: a peer that claims a large
/// frame and sends little costs this, not the frame.
const GROWTH: usize = 64 * 1024;

/// A frame's length exceeds what the connection allows.
#[derive(Debug)]
pub(crate) struct FrameTooLarge {
    pub(crate) len: usize,
    pub(crate) max: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a frame of {} bytes, above the {} allowed", self.len, self.max)
    }
}

impl std::error::Error for FrameTooLarge {}

/// Encodes `message` as one frame into `buf` (cleared first); a frame above `max` bytes is
/// an error that says how to raise the limit.
pub(crate) fn encode_message(message: Message, codec: &dyn BatchCodec, buf: &mut Vec<u8>, max: usize) -> Result<()> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    match message {
        Message::Data(batch) => {
            buf.push(DATA);
            codec.encode(batch, buf)?;
        }
        Message::Watermark(w) => {
            buf.push(WATERMARK);
            buf.extend_from_slice(&w.to_le_bytes());
        }
        Message::Idle => buf.push(IDLE),
        Message::Barrier(b) => {
            buf.push(BARRIER);
            bincode::serialize_into(&mut *buf, &b).map_err(|e| RuntimeError::Internal(format!("barrier: {e}")))?;
        }
        Message::EndOfData => buf.push(END_OF_DATA),
        Message::EndOfStream => buf.push(END_OF_STREAM),
    }
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|l| (*l as usize) <= max)
        .ok_or_else(|| {
            RuntimeError::InvalidGraph(format!(
                "a batch of {} bytes is larger than the {max} bytes a frame between workers may hold: lower --batch-size or raise --max-frame-mb (on every worker)",
                buf.len() - 4
            ))
        })?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Reads one frame's body (at most `max` bytes) into `buf`; `Ok(false)` at a clean end of
/// the connection. The buffer grows only as bytes arrive (by at most what arrived, or 64 KB),
/// so a length that lies costs nothing; its capacity is kept for the next frame.
pub(crate) fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty frame"));
    }
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, FrameTooLarge { len, max }));
    }
    let mut at = 0;
    while at < len {
        // What is already allocated is free to use; beyond it, grow by what arrived.
        let end = len.min(buf.capacity().max(at.saturating_mul(2)).max(GROWTH));
        if buf.len() < end {
            buf.resize(end, 0);
        }
        r.read_exact(&mut buf[at..end])?;
        at = end;
    }
    buf.truncate(len);
    Ok(true)
}

/// Writes `body` as one frame.
pub(crate) fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(body)
}

/// Decodes a frame body read by [`read_frame`].
pub(crate) fn decode_message(body: &[u8], codec: &dyn BatchCodec) -> Result<Message> {
    let bad = |what: &str| RuntimeError::Internal(format!("malformed frame from another worker: {what}"));
    let (&tag, rest) = body.split_first().ok_or_else(|| bad("empty"))?;
    Ok(match tag {
        DATA => Message::Data(codec.decode(rest)?),
        WATERMARK => {
            let w: [u8; 8] = rest.try_into().map_err(|_| bad("watermark"))?;
            Message::Watermark(i64::from_le_bytes(w))
        }
        IDLE => Message::Idle,
        BARRIER => Message::Barrier(bincode::deserialize::<CheckpointBarrier>(rest).map_err(|_| bad("barrier"))?),
        END_OF_DATA => Message::EndOfData,
        END_OF_STREAM => Message::EndOfStream,
        t => return Err(bad(&format!("tag {t}"))),
    })
}

/// Writes a length-prefixed bincode value (control messages).
pub(crate) fn write_value<T: serde::Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = bincode::serialize(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    write_frame(w, &body)
}

/// Reads a value written by [`write_value`], of at most `max` bytes; `Ok(None)` at a clean
/// end of the connection.
pub(crate) fn read_value<T: serde::de::DeserializeOwned>(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<T>> {
    if !read_frame(r, buf, max)? {
        return Ok(None);
    }
    bincode::deserialize(buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::downcast_batch;

    #[test]
    fn every_message_round_trips_through_a_frame() {
        let codec = BincodeCodec::<(String, u64)>::new();
        let batch: Vec<Record<(String, u64)>> = vec![Record::new(("a".into(), 1), 5), Record::untimed(("b".into(), 2))];
        let barrier = CheckpointBarrier {
            id: 7,
            timestamp: 9,
            is_savepoint: true,
        };
        let messages = vec![
            Message::Data(Box::new(batch.clone())),
            Message::Watermark(-3),
            Message::Idle,
            Message::Barrier(barrier),
            Message::EndOfData,
            Message::EndOfStream,
        ];
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        for m in messages {
            encode_message(m, &codec, &mut buf, DEFAULT_MAX_FRAME).unwrap();
            wire.extend_from_slice(&buf);
        }
        let mut r = wire.as_slice();
        let mut body = Vec::new();
        let mut got = Vec::new();
        while read_frame(&mut r, &mut body, DEFAULT_MAX_FRAME).unwrap() {
            got.push(decode_message(&body, &codec).unwrap());
        }
        assert_eq!(got.len(), 6);
        match got.remove(0) {
            Message::Data(b) => assert_eq!(downcast_batch::<(String, u64)>(b).unwrap(), batch),
            m => panic!("{m:?}"),
        }
        assert!(matches!(got[0], Message::Watermark(-3)));
        assert!(matches!(got[1], Message::Idle));
        assert!(matches!(got[2], Message::Barrier(b) if b == barrier));
        assert!(matches!(got[3], Message::EndOfData));
        assert!(matches!(got[4], Message::EndOfStream));
    }

    #[test]
    fn corrupt_frames_are_errors_not_panics() {
        let codec = BincodeCodec::<u64>::new();
        assert!(decode_message(&[], &codec).is_err());
        assert!(decode_message(&[9], &codec).is_err());
        assert!(decode_message(&[1, 2], &codec).is_err());
        assert!(decode_message(&[0, 255, 255], &codec).is_err());
        let mut body = Vec::new();
        let huge = (u32::MAX).to_le_bytes();
        let e = read_frame(&mut &huge[..], &mut body, DEFAULT_MAX_FRAME).unwrap_err();
        assert!(
            e.to_string().contains("4294967295 bytes, above the 67108864 allowed"),
            "{e}"
        );
        assert!(
            read_frame(&mut &[0u8, 0, 0, 0][..], &mut body, 10).is_err(),
            "an empty frame"
        );
    }

    #[test]
    fn a_large_claim_allocates_only_what_arrives() {
        // A claim of 60 MB followed by 100 bytes and the end of the connection.
        let mut wire = (60u32 << 20).to_le_bytes().to_vec();
        wire.extend_from_slice(&[7; 100]);
        let mut body = Vec::new();
        let e = read_frame(&mut wire.as_slice(), &mut body, DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.capacity() <= 2 * GROWTH, "grew to {} bytes", body.capacity());
        // A real large frame arrives whole, and the next smaller one reuses the buffer.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        write_frame(&mut wire, &big).unwrap();
        write_frame(&mut wire, &[1, 2, 3]).unwrap();
        let mut r = wire.as_slice();
        assert!(read_frame(&mut r, &mut body, DEFAULT_MAX_FRAME).unwrap());
        assert_eq!(body, big);
        let capacity = body.capacity();
        assert!(read_frame(&mut r, &mut body, DEFAULT_MAX_FRAME).unwrap());
        assert_eq!(body, [1, 2, 3]);
        assert_eq!(body.capacity(), capacity);
        assert!(!read_frame(&mut r, &mut body, DEFAULT_MAX_FRAME).unwrap());
    }

    #[test]
    fn a_batch_above_the_limit_is_refused_at_the_sender_with_the_flags_to_change() {
        let codec = BincodeCodec::<u64>::new();
        let batch: Vec<Record<u64>> = (0..1000).map(Record::untimed).collect();
        let mut buf = Vec::new();
        let e = encode_message(Message::Data(Box::new(batch)), &codec, &mut buf, 1000).unwrap_err();
        assert!(e.to_string().contains("--max-frame-mb"), "{e}");
    }
}
