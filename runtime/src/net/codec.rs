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

/// Frames larger than this are refused: a corrupt length must not allocate gigabytes.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Encodes `message` as one frame into `buf` (cleared first).
pub(crate) fn encode_message(message: Message, codec: &dyn BatchCodec, buf: &mut Vec<u8>) -> Result<()> {
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
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| RuntimeError::Internal(format!("a batch of {} bytes is too large to send", buf.len())))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Reads one frame's body into `buf`; `Ok(false)` at a clean end of the connection.
pub(crate) fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    // Grows with the bytes that arrive, not with the length claimed.
    buf.clear();
    let got = r.take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame cut short: {got} of {len} bytes"),
        ));
    }
    Ok(true)
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

/// Writes a length-prefixed bincode value (handshakes and control messages).
pub(crate) fn write_value<T: serde::Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = bincode::serialize(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)
}

/// Reads a value written by [`write_value`]; `Ok(None)` at a clean end of the connection.
pub(crate) fn read_value<T: serde::de::DeserializeOwned>(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
) -> io::Result<Option<T>> {
    if !read_frame(r, buf)? {
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
            encode_message(m, &codec, &mut buf).unwrap();
            wire.extend_from_slice(&buf);
        }
        let mut r = wire.as_slice();
        let mut body = Vec::new();
        let mut got = Vec::new();
        while read_frame(&mut r, &mut body).unwrap() {
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
        assert!(read_frame(&mut &huge[..], &mut body).is_err());
    }
}
