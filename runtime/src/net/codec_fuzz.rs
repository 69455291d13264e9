//! What a stranger on a worker's port can send: arbitrary bytes into the frame reader, the
//! message decoder and the handshake and control decoders. Each answers with an error or a
//! value, never a panic, and allocates no more than the bytes that actually arrived (a length
//! prefix is a claim, not a promise).

use std::io::{self, Read};

use proptest::prelude::*;

use super::codec::{
    decode_message, encode_message, read_frame, read_value, BincodeCodec, CONTROL_MAX, DEFAULT_MAX_FRAME,
};
use super::control::{ToLeader, ToWorker};
use super::Hello;
use crate::element::{CheckpointBarrier, Message, Record};

/// Hands out its bytes at most `chunk` at a time, as a TCP stream does.
struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.bytes.len().min(buf.len()).min(self.chunk.max(1));
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Reads frames off `bytes` until the stream ends or a frame is refused, decoding each as
/// a data-plane message with two codecs and as every control-plane value; returns how many
/// frames were read.
fn consume(bytes: &[u8], chunk: usize) -> usize {
    let strings = BincodeCodec::<(String, u64)>::new();
    let blobs = BincodeCodec::<Vec<u8>>::new();
    let mut r = Trickle { bytes, chunk };
    let mut body = Vec::new();
    let mut frames = 0;
    while let Ok(true) = read_frame(&mut r, &mut body, DEFAULT_MAX_FRAME) {
        frames += 1;
        assert!(
            body.len() <= bytes.len(),
            "a frame body is never larger than what arrived"
        );
        let _ = decode_message(&body, &strings);
        let _ = decode_message(&body, &blobs);
    }
    for decode in [decode_hello, decode_to_worker, decode_to_leader] {
        let mut r = Trickle { bytes, chunk };
        let mut buf = Vec::new();
        while let Ok(Some(())) = decode(&mut r, &mut buf) {}
    }
    frames
}

fn decode_hello(r: &mut Trickle<'_>, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    read_value::<Hello>(r, buf, CONTROL_MAX).map(|v| v.map(drop))
}

fn decode_to_worker(r: &mut Trickle<'_>, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    read_value::<ToWorker>(r, buf, CONTROL_MAX).map(|v| v.map(drop))
}

fn decode_to_leader(r: &mut Trickle<'_>, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    read_value::<ToLeader>(r, buf, CONTROL_MAX).map(|v| v.map(drop))
}

/// A valid stream of frames: every kind of message once.
fn valid_stream() -> Vec<u8> {
    let codec = BincodeCodec::<(String, u64)>::new();
    let batch: Vec<Record<(String, u64)>> = vec![Record::new(("a".into(), 1), 5), Record::untimed(("bc".into(), 2))];
    let barrier = CheckpointBarrier {
        id: 7,
        timestamp: 9,
        is_savepoint: false,
    };
    let mut wire = Vec::new();
    let mut buf = Vec::new();
    for m in [
        Message::Data(Box::new(batch)),
        Message::Watermark(3),
        Message::Idle,
        Message::Barrier(barrier),
        Message::EndOfData,
        Message::EndOfStream,
    ] {
        encode_message(m, &codec, &mut buf, DEFAULT_MAX_FRAME).unwrap();
        wire.extend_from_slice(&buf);
    }
    wire
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes, delivered in arbitrary pieces.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        consume(&bytes, chunk);
    }

    /// A valid stream with a few bytes changed: deeper into the decoders than random bytes
    /// get.
    #[test]
    fn corrupted_valid_frames_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = valid_stream();
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let len = cut.index(wire.len() + 1);
        consume(&wire[..len], 7);
    }
}

#[test]
fn the_valid_stream_reads_back_whole() {
    assert_eq!(
        consume(&valid_stream(), 5),
        6,
        "the fuzzing starts from frames that decode"
    );
}

#[test]
fn a_length_prefix_is_not_an_allocation() {
    // A header claiming the largest frame allowed, then a few bytes, then the end.
    let mut wire = (DEFAULT_MAX_FRAME as u32).to_le_bytes().to_vec();
    wire.extend_from_slice(&[0, 1, 2, 3]);
    let mut body = Vec::new();
    let err = read_frame(&mut Trickle { bytes: &wire, chunk: 3 }, &mut body, DEFAULT_MAX_FRAME).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    assert!(
        body.capacity() < 1 << 20,
        "a frame that claims {DEFAULT_MAX_FRAME} bytes and brings 4 allocated {} bytes",
        body.capacity()
    );
    // Beyond the largest frame: refused before reading the body.
    let huge = u32::MAX.to_le_bytes();
    assert!(read_frame(&mut &huge[..], &mut body, DEFAULT_MAX_FRAME).is_err());
    // A batch claiming 2^60 records (bincode's u64 length) in a small frame.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(1u64 << 60).to_le_bytes());
    frame.extend_from_slice(&[1; 16]);
    assert!(decode_message(&frame, &BincodeCodec::<(String, u64)>::new()).is_err());
    assert!(decode_message(&frame, &BincodeCodec::<Vec<u8>>::new()).is_err());
}
