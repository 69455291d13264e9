//! The batch decoder on batches laid out byte by byte here, as the Kafka protocol's
//! "Record Batch" section describes them (compressed ones with each codec's own library).

use std::io::Write as _;

use super::*;

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => varint(out, -1),
        Some(b) => {
            varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A record as it sits in a batch: length, attributes, deltas, key, value, headers.
fn record(
    offset_delta: i64,
    ts_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    varint(&mut body, ts_delta);
    varint(&mut body, offset_delta);
    bytes(&mut body, key);
    bytes(&mut body, value);
    varint(&mut body, headers.len() as i64);
    for (name, value) in headers {
        bytes(&mut body, Some(name.as_bytes()));
        bytes(&mut body, *value);
    }
    let mut out = Vec::new();
    varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

struct Header {
    base_offset: i64,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    count: i32,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            base_offset: 0,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 1_000,
            producer_id: -1,
            producer_epoch: -1,
            count: 1,
        }
    }
}

/// A whole batch around `records` (already compressed if the attributes say so), with a
/// correct CRC.
fn batch(h: &Header, records: &[u8]) -> Vec<u8> {
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&h.attributes.to_be_bytes());
    after_crc.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    after_crc.extend_from_slice(&h.base_timestamp.to_be_bytes());
    after_crc.extend_from_slice(&(h.base_timestamp + 5).to_be_bytes()); // max timestamp
    after_crc.extend_from_slice(&h.producer_id.to_be_bytes());
    after_crc.extend_from_slice(&h.producer_epoch.to_be_bytes());
    after_crc.extend_from_slice(&0i32.to_be_bytes()); // base sequence
    after_crc.extend_from_slice(&h.count.to_be_bytes());
    after_crc.extend_from_slice(records);
    let mut out = Vec::new();
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    let length = 4 + 1 + 4 + after_crc.len(); // leader epoch, magic, crc, rest
    out.extend_from_slice(&(length as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&crc32c::crc32c(&after_crc).to_be_bytes());
    out.extend_from_slice(&after_crc);
    out
}

fn three_records() -> Vec<u8> {
    let mut r = record(0, 0, Some(b"k0"), Some(b"v0"), &[("h", Some(b"1")), ("h", Some(b"2"))]);
    r.extend(record(1, 3, None, None, &[]));
    r.extend(record(2, 5, Some(b""), Some(b"v2"), &[("null", None)]));
    r
}

fn three_header(attributes: i16) -> Header {
    Header {
        base_offset: 40,
        attributes,
        last_offset_delta: 2,
        producer_id: 7,
        producer_epoch: 3,
        count: 3,
        ..Header::default()
    }
}

fn assert_three(b: &Batch) {
    assert_eq!((b.base_offset, b.next_offset()), (40, 43));
    assert_eq!((b.producer_id, b.producer_epoch), (7, 3));
    let offsets: Vec<i64> = b.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![40, 41, 42]);
    let stamps: Vec<i64> = b.records.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, vec![1_000, 1_003, 1_005]);
    let r = &b.records;
    assert_eq!(
        (r[0].key.as_deref(), r[0].value.as_deref()),
        (Some(&b"k0"[..]), Some(&b"v0"[..]))
    );
    assert_eq!(
        r[0].headers,
        vec![
            ("h".to_string(), Some(b"1".to_vec())),
            ("h".to_string(), Some(b"2".to_vec()))
        ],
        "repeated header names are kept, in order"
    );
    assert_eq!(
        (r[1].key.as_deref(), r[1].value.as_deref()),
        (None, None),
        "a null key and a tombstone"
    );
    assert_eq!(r[2].key.as_deref(), Some(&b""[..]), "empty is not null");
    assert_eq!(r[2].headers, vec![("null".to_string(), None)]);
}

#[test]
fn a_plain_batch_gives_offsets_timestamps_keys_values_and_every_header() {
    let bytes = batch(&three_header(0), &three_records());
    let d = decode_batches(&bytes).unwrap();
    assert_eq!((d.batches.len(), d.partial), (1, 0));
    let b = &d.batches[0];
    assert_three(b);
    assert!(!b.transactional && !b.control);
    assert_eq!(b.compression, Compression::None);
    assert_eq!(b.control_type(), None);
}

#[test]
fn transactional_and_control_batches_say_so_and_markers_say_commit_or_abort() {
    let data = batch(&three_header(0x10), &three_records());
    let marker = |kind: i16, offset: i64| {
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend_from_slice(&kind.to_be_bytes());
        let mut value = 0i16.to_be_bytes().to_vec();
        value.extend_from_slice(&5i32.to_be_bytes()); // coordinator epoch
        let h = Header {
            base_offset: offset,
            attributes: 0x30,
            producer_id: 7,
            producer_epoch: 3,
            ..Header::default()
        };
        batch(&h, &record(0, 0, Some(&key), Some(&value), &[]))
    };
    let mut log = data;
    log.extend(marker(1, 43));
    log.extend(marker(0, 44));
    log.extend(marker(9, 45));
    let d = decode_batches(&log).unwrap();
    let b = &d.batches;
    assert_eq!(b.len(), 4);
    assert!(b[0].transactional && !b[0].control);
    assert_three(&b[0]);
    assert!(b[1].transactional && b[1].control);
    assert_eq!(b[1].control_type(), Some(ControlType::Commit));
    assert_eq!(b[2].control_type(), Some(ControlType::Abort));
    assert_eq!(b[3].control_type(), Some(ControlType::Other(9)));
    assert_eq!((b[1].base_offset, b[2].base_offset), (43, 44));
}

fn compressed(codec: i16, records: &[u8]) -> Vec<u8> {
    let payload = match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(records).unwrap(),
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        4 => zstd::encode_all(records, 3).unwrap(),
        _ => unreachable!(),
    };
    batch(&three_header(codec), &payload)
}

#[test]
fn compressed_batches_of_every_codec_decode_to_the_same_records() {
    for (codec, name) in [
        (1, Compression::Gzip),
        (2, Compression::Snappy),
        (3, Compression::Lz4),
        (4, Compression::Zstd),
    ] {
        let d = decode_batches(&compressed(codec, &three_records())).unwrap();
        assert_eq!(d.batches.len(), 1, "{name:?}");
        assert_eq!(d.batches[0].compression, name);
        assert_three(&d.batches[0]);
    }
}

#[test]
fn snappy_in_the_java_clients_framing_decodes_too() {
    let records = three_records();
    let (first, second) = records.split_at(10);
    let mut framed = XERIAL_MAGIC.to_vec();
    framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // version, compatible version
    for block in [first, second] {
        let c = snap::raw::Encoder::new().compress_vec(block).unwrap();
        framed.extend_from_slice(&(c.len() as u32).to_be_bytes());
        framed.extend_from_slice(&c);
    }
    let d = decode_batches(&batch(&three_header(2), &framed)).unwrap();
    assert_three(&d.batches[0]);
}

#[test]
fn a_batch_cut_off_at_the_end_is_left_for_the_next_fetch() {
    let one = batch(&three_header(0), &three_records());
    let mut two = one.clone();
    two.extend_from_slice(&one);
    for cut in [1, 11, 12, 30, one.len() - 1] {
        let d = decode_batches(&two[..one.len() + cut]).unwrap();
        assert_eq!((d.batches.len(), d.partial), (1, cut), "cut after {cut} bytes");
    }
    let d = decode_batches(&two).unwrap();
    assert_eq!((d.batches.len(), d.partial), (2, 0));
}

#[test]
fn damaged_batches_are_errors_that_name_their_offset() {
    let good = batch(&three_header(0), &three_records());
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let e = decode_batches(&flipped).unwrap_err();
    assert_eq!(e.base_offset, Some(40));
    assert!(e.to_string().contains("CRC mismatch"), "{e}");

    let mut old = good.clone();
    old[16] = 1;
    assert!(decode_batches(&old).unwrap_err().to_string().contains("magic 1"));

    let mut negative = good.clone();
    negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    assert!(decode_batches(&negative)
        .unwrap_err()
        .to_string()
        .contains("negative batch length"));
}

#[test]
fn counts_and_lengths_that_lie_are_errors_not_allocations() {
    // Two billion records announced, three there: no giant reservation, an error.
    let h = Header {
        count: i32::MAX,
        ..three_header(0)
    };
    let e = decode_batches(&batch(&h, &three_records())).unwrap_err();
    assert!(e.to_string().contains(&format!("record 3 of {}", i32::MAX)), "{e}");
    // One record fewer than the bytes hold.
    let h = Header {
        count: 2,
        ..three_header(0)
    };
    let e = decode_batches(&batch(&h, &three_records())).unwrap_err();
    assert!(e.to_string().contains("bytes after the 2 records"), "{e}");
    // A key longer than its record.
    let mut r = vec![0u8];
    varint(&mut r, 0);
    varint(&mut r, 0);
    varint(&mut r, 1_000_000);
    let mut rec = Vec::new();
    varint(&mut rec, r.len() as i64);
    rec.extend(r);
    let e = decode_batches(&batch(&Header::default(), &rec)).unwrap_err();
    assert!(e.to_string().contains("1000000 bytes needed"), "{e}");
    // A varint that never ends.
    let e = decode_batches(&batch(&Header::default(), &[0xff; 20])).unwrap_err();
    assert!(e.to_string().contains("longer than 10 bytes"), "{e}");
}

#[test]
fn decompression_stops_at_the_limit() {
    let big = vec![0u8; 64 * 1024];
    let z = zstd::encode_all(&big[..], 3).unwrap();
    assert!(z.len() < 1_000, "zeros compress well");
    let e = decompress(Compression::Zstd, &z, 16 * 1024).unwrap_err();
    assert!(e.contains("more than 16384 bytes"), "{e}");
    assert_eq!(decompress(Compression::Zstd, &z, 64 * 1024).unwrap().len(), 64 * 1024);
    let s = snap::raw::Encoder::new().compress_vec(&big).unwrap();
    let e = decompress(Compression::Snappy, &s, 16 * 1024).unwrap_err();
    assert!(e.contains("more than 16384 bytes"), "{e}");
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    g.write_all(&big).unwrap();
    let g = g.finish().unwrap();
    assert!(decompress(Compression::Gzip, &g, 1024).is_err());
}
