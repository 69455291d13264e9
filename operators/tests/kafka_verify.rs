//! The exactly-once verifier against planted faults, on the real test broker (tansu) with
//! real transactional producers (librdkafka): a transaction committed twice, a record
//! dropped, an aborted transaction's records, a re-commit with a reused `floe.*` stamp and a
//! transaction left open each make it fail with a message naming the inputs missing or
//! doubled; clean output, a fenced producer's transaction and compressed batches pass.
//!
//! Input `i` is written as the value `i` (decimal): the id the ledger counts by.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use floe_operators::kafka::sink::{eos_headers, EosStamp};
use floe_operators::kafka::testing::{check_exactly_once, CommittedRead, LedgerViolations, TestBroker};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TIMEOUT: Duration = Duration::from_secs(30);

fn broker(topic: &str) -> TestBroker {
    let b = TestBroker::start().unwrap();
    b.create_topic(topic, 2).unwrap();
    b
}

/// A transactional producer, initialized (fencing earlier ones with the same id).
fn producer(broker: &TestBroker, transactional_id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut defaults = vec![("transactional.id", transactional_id)];
    defaults.extend_from_slice(extra);
    let p: BaseProducer = broker.config().client_config(&defaults).create().unwrap();
    p.init_transactions(TIMEOUT).unwrap();
    p
}

/// A stamp like the exactly-once sink's for input `i`: the same for every copy of it.
fn stamp(i: u64) -> OwnedHeaders {
    EosStamp {
        transactional_id: "verify-0".into(),
        subtask: 0,
        attempt: 0xa1,
        epoch: 1,
        seq: i,
        committed_by: None,
    }
    .to_headers()
}

/// Sends inputs `ids` (keyed over a few keys, so both partitions get some), stamped if
/// `stamped`, and flushes.
fn send(p: &BaseProducer, topic: &str, ids: Range<u64>, stamped: bool) {
    for i in ids {
        let (key, value) = (format!("k{}", i % 7), i.to_string());
        let mut r = BaseRecord::to(topic).key(&key).payload(&value);
        if stamped {
            r = r.headers(stamp(i));
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(TIMEOUT).unwrap();
}

/// One committed transaction holding inputs `ids`.
fn commit(p: &BaseProducer, topic: &str, ids: Range<u64>) {
    p.begin_transaction().unwrap();
    send(p, topic, ids, false);
    p.commit_transaction(TIMEOUT).unwrap();
}

fn abort(p: &BaseProducer, topic: &str, ids: Range<u64>) {
    p.begin_transaction().unwrap();
    send(p, topic, ids, false);
    p.abort_transaction(TIMEOUT).unwrap();
}

/// The verifier: inputs `expected`, each output explained by the id in its value.
fn verify(
    broker: &TestBroker,
    topic: &str,
    expected: Range<u64>,
) -> (CommittedRead, Result<usize, Box<LedgerViolations<u64>>>) {
    let read = broker.read_committed(topic).unwrap();
    let verdict = check_exactly_once(topic, expected, &read.records, |r| {
        r.value_str()
            .parse::<u64>()
            .map(|i| vec![i])
            .map_err(|e| format!("value {:?}: {e}", r.value_str()))
    });
    (read, verdict)
}

fn ids(m: &[floe_operators::kafka::testing::Miscount<u64>]) -> Vec<u64> {
    m.iter().map(|m| m.input).collect()
}

#[test]
fn clean_output_passes() {
    let b = broker("clean");
    let p = producer(&b, "clean", &[]);
    commit(&p, "clean", 0..50);
    commit(&p, "clean", 50..100);
    let (read, verdict) = verify(&b, "clean", 0..100);
    assert_eq!(verdict, Ok(100));
    assert_eq!(
        (read.commits, read.aborts, read.unresolved.len()),
        (4, 0, 0),
        "a marker per partition and transaction"
    );
    let partitions: BTreeSet<i32> = read.records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 2);
}

#[test]
fn a_transaction_committed_twice_fails_naming_the_doubled_inputs() {
    let b = broker("twice");
    let p = producer(&b, "twice", &[]);
    commit(&p, "twice", 0..100);
    commit(&p, "twice", 40..45);
    let (_, verdict) = verify(&b, "twice", 0..100);
    let v = verdict.unwrap_err();
    assert_eq!(ids(&v.doubled), (40..45).collect::<Vec<_>>());
    assert!(v.missing.is_empty() && v.unexpected.is_empty());
    assert!(v.doubled.iter().all(|m| m.found.len() == 2));
    let msg = v.to_string();
    assert!(msg.contains("5 doubled"), "{msg}");
    assert!(
        msg.contains("input 40 is explained 2 times (expected once): at partition"),
        "{msg}"
    );
}

#[test]
fn a_dropped_record_fails_naming_the_missing_input() {
    let b = broker("dropped");
    let p = producer(&b, "dropped", &[]);
    commit(&p, "dropped", 0..17);
    commit(&p, "dropped", 18..100);
    let (_, verdict) = verify(&b, "dropped", 0..100);
    let v = verdict.unwrap_err();
    assert_eq!(ids(&v.missing), vec![17]);
    assert!(v.doubled.is_empty());
    let msg = v.to_string();
    assert!(
        msg.contains("input 17 is missing: expected once, found in no committed output"),
        "{msg}"
    );
}

#[test]
fn an_aborted_transactions_records_do_not_count() {
    let b = broker("aborted");
    let p = producer(&b, "aborted", &[]);
    commit(&p, "aborted", 0..90);
    // Inputs 0..10 again, aborted: counted, they would be doubled.
    abort(&p, "aborted", 0..10);
    let (read, verdict) = verify(&b, "aborted", 0..90);
    assert_eq!(verdict, Ok(90));
    assert_eq!(read.aborted, 10, "the aborted records are in the log, and left out");

    // Inputs 90..100 only in an aborted transaction: missing.
    abort(&p, "aborted", 90..100);
    let (read, verdict) = verify(&b, "aborted", 0..100);
    let v = verdict.unwrap_err();
    assert_eq!(ids(&v.missing), (90..100).collect::<Vec<_>>());
    assert!(v.to_string().contains("input 95 is missing"), "{v}");
    assert_eq!(read.aborted, 20);
}

#[test]
fn a_recommit_with_a_reused_stamp_fails_although_every_stamp_looks_unique() {
    let b = broker("restamp");
    let p = producer(&b, "restamp", &[]);
    p.begin_transaction().unwrap();
    send(&p, "restamp", 0..100, true);
    p.commit_transaction(TIMEOUT).unwrap();
    // A restored run commits the same epoch again under the same stamp.
    let again = producer(&b, "restamp", &[]);
    again.begin_transaction().unwrap();
    send(&again, "restamp", 60..100, true);
    again.commit_transaction(TIMEOUT).unwrap();

    let (read, verdict) = verify(&b, "restamp", 0..100);
    // What the old check counted: each (subtask, attempt, epoch, seq) once. It sees 100
    // records and nothing wrong.
    let stamps: BTreeSet<Vec<Option<String>>> = read
        .records
        .iter()
        .map(|r| {
            [
                eos_headers::SUBTASK,
                eos_headers::ATTEMPT,
                eos_headers::EPOCH,
                eos_headers::SEQ,
            ]
            .iter()
            .map(|h| r.header_str(h))
            .collect()
        })
        .collect();
    assert_eq!((read.records.len(), stamps.len()), (140, 100));
    let v = verdict.unwrap_err();
    assert_eq!(ids(&v.doubled), (60..100).collect::<Vec<_>>());
    assert!(v.to_string().contains("input 60 is explained 2 times"), "{v}");
}

#[test]
fn a_transaction_left_open_does_not_count() {
    let b = broker("open");
    let p = producer(&b, "open", &[]);
    commit(&p, "open", 0..90);
    let open = producer(&b, "open-2", &[]);
    open.begin_transaction().unwrap();
    send(&open, "open", 90..100, false);
    let (read, verdict) = verify(&b, "open", 0..100);
    let v = verdict.unwrap_err();
    assert_eq!(ids(&v.missing), (90..100).collect::<Vec<_>>());
    let left: usize = read.unresolved.iter().map(|u| u.records).sum();
    assert_eq!(left, 10);
    assert!(read.unresolved.iter().all(|u| !u.superseded));
    drop(open);
}

#[test]
fn a_fenced_producers_transaction_is_aborted_and_the_new_one_counts() {
    let b = broker("fenced");
    let zombie = producer(&b, "fenced", &[]);
    zombie.begin_transaction().unwrap();
    send(&zombie, "fenced", 0..30, false);
    // A new producer with the same transactional id fences it (the broker aborts its
    // transaction) and writes the inputs again.
    let p = producer(&b, "fenced", &[]);
    commit(&p, "fenced", 0..30);
    let (read, verdict) = verify(&b, "fenced", 0..30);
    assert_eq!(verdict, Ok(30));
    assert_eq!((read.aborted, read.unresolved.len()), (30, 0));
    drop(zombie);
}

#[test]
fn batches_librdkafka_compresses_are_read_with_every_codec() {
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let b = broker(codec);
        let p = producer(&b, codec, &[("compression.type", codec), ("linger.ms", "50")]);
        commit(&p, codec, 0..200);
        let (read, verdict) = verify(&b, codec, 0..200);
        assert_eq!(verdict, Ok(200), "{codec}");
        assert!(
            read.compressed_batches > 0,
            "{codec}: the broker kept the batches compressed"
        );
    }
}
