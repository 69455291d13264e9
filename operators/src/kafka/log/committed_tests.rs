//! Which records a partition's log commits, on logs written out here batch by batch.

use super::*;

fn record(offset: i64, value: &str) -> BatchRecord {
    BatchRecord {
        offset,
        timestamp: 0,
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
    }
}

/// A data batch of `values` at `offset`; `producer` is (id, epoch) of a transaction, or
/// `None` for a plain producer.
fn data(offset: i64, producer: Option<(i64, i16)>, values: &[&str]) -> Batch {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    Batch {
        base_offset: offset,
        last_offset_delta: values.len() as i32 - 1,
        producer_id,
        producer_epoch,
        transactional: producer.is_some(),
        control: false,
        compression: Compression::None,
        records: values
            .iter()
            .enumerate()
            .map(|(i, v)| record(offset + i as i64, v))
            .collect(),
    }
}

fn marker(offset: i64, (producer_id, producer_epoch): (i64, i16), commit: bool) -> Batch {
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    Batch {
        base_offset: offset,
        last_offset_delta: 0,
        producer_id,
        producer_epoch,
        transactional: true,
        control: true,
        compression: Compression::None,
        records: vec![BatchRecord {
            key: Some(key),
            ..record(offset, "")
        }],
    }
}

fn resolve(batches: Vec<Batch>) -> CommittedRead {
    let mut read = CommittedRead::default();
    resolve_partition(3, batches, &mut read);
    read
}

fn values(read: &CommittedRead) -> Vec<String> {
    read.records.iter().map(CommittedRecord::value_str).collect()
}

const A: (i64, i16) = (10, 0);
const B: (i64, i16) = (11, 0);

#[test]
fn plain_records_count_as_they_are_and_transactions_only_once_committed() {
    let read = resolve(vec![
        data(0, None, &["plain"]),
        data(1, Some(A), &["a1", "a2"]),
        data(3, Some(B), &["b1"]),
        marker(4, A, true),
        data(5, Some(B), &["b2"]),
        marker(6, B, false),
        data(7, Some(A), &["a3"]),
    ]);
    assert_eq!(values(&read), vec!["plain", "a1", "a2"]);
    assert_eq!(
        read.records[1].position(),
        Position {
            partition: 3,
            offset: 1
        }
    );
    assert_eq!(
        (read.records[0].transaction, read.records[1].transaction),
        (None, Some(10))
    );
    assert_eq!(read.aborted, 2, "b1 and b2");
    assert_eq!((read.commits, read.aborts, read.stray_markers), (1, 1, 0));
    assert_eq!(
        read.unresolved,
        vec![Unresolved {
            partition: 3,
            producer: A,
            first_offset: 7,
            records: 1,
            superseded: false
        }],
        "a3 is in a transaction still open"
    );
}

#[test]
fn the_same_records_committed_twice_appear_twice() {
    let read = resolve(vec![
        data(0, Some(A), &["x", "y"]),
        marker(2, A, true),
        data(3, Some(A), &["x", "y"]),
        marker(5, A, true),
    ]);
    assert_eq!(values(&read), vec!["x", "y", "x", "y"], "no deduplication");
}

#[test]
fn a_marker_of_another_producer_or_epoch_does_not_commit() {
    let read = resolve(vec![data(0, Some(A), &["a"]), marker(1, B, true)]);
    assert!(read.records.is_empty());
    assert_eq!((read.stray_markers, read.unresolved.len()), (1, 1));

    // A COMMIT of a newer epoch does not commit the older epoch's records.
    let read = resolve(vec![data(0, Some(A), &["old"]), marker(1, (10, 1), true)]);
    assert!(read.records.is_empty());
    assert_eq!(read.stray_markers, 1);

    // A marker of an older epoch leaves the newer transaction open.
    let read = resolve(vec![data(0, Some((10, 2)), &["new"]), marker(1, (10, 1), true)]);
    assert!(read.records.is_empty());
}

#[test]
fn an_abort_of_a_newer_epoch_aborts_a_fenced_transaction() {
    let read = resolve(vec![data(0, Some(A), &["zombie"]), marker(1, (10, 1), false)]);
    assert!(read.records.is_empty());
    assert_eq!((read.aborted, read.unresolved.len()), (1, 0));
}

#[test]
fn a_producer_that_goes_on_under_a_new_epoch_leaves_its_old_records_unresolved() {
    let read = resolve(vec![
        data(0, Some(A), &["before the restart"]),
        data(1, Some((10, 1)), &["after"]),
        marker(2, (10, 1), true),
    ]);
    assert_eq!(values(&read), vec!["after"]);
    assert_eq!(
        read.unresolved,
        vec![Unresolved {
            partition: 3,
            producer: A,
            first_offset: 0,
            records: 1,
            superseded: true
        }]
    );
}

#[test]
fn end_markers_are_left_out_and_committed_records_come_in_offset_order() {
    let mut end = data(4, None, &["end"]);
    end.records[0]
        .headers
        .push((END_MARKER_HEADER.to_string(), Some(b"7".to_vec())));
    let read = resolve(vec![
        data(0, Some(A), &["a"]),
        data(1, None, &["plain"]),
        marker(2, A, true),
        data(3, Some(B), &["b"]),
        end,
    ]);
    assert_eq!(values(&read), vec!["a", "plain"]);
}
