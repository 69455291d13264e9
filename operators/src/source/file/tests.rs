use super::*;
use crate::source::test_support::{drain_into, VecOutput};
use floe_runtime::TaskInfo;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::io::Write;

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
struct Row {
    id: u64,
    name: String,
}

fn info(s: usize, p: usize) -> TaskInfo {
    let mut i = TaskInfo::new("t", "file", s, p, 128);
    i.batch_size = 7;
    i
}

fn read_all<T: DeserializeOwned + Data>(
    path: &std::path::Path,
    format: LineFormat,
    split_size: u64,
    p: usize,
) -> (Vec<T>, Vec<BadRecord>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for s in 0..p {
        let options = FileSourceOptions {
            split_size,
            errors_tag: Some(9),
            ..Default::default()
        };
        let mut src = FileSource::<T>::new(vec![path.to_path_buf()], format.clone(), options);
        let mut out = VecOutput::default();
        drain_into(&mut src, info(s, p), &mut out).unwrap();
        good.extend(out.values::<T>());
        bad.extend(out.side_values::<BadRecord>());
    }
    (good, bad)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every non-blank line is read exactly once, with its line number, for any split size
    /// and parallelism.
    #[test]
    fn splits_read_every_line_once(
        lines in prop::collection::vec(prop_oneof![Just(String::new()), "[a-z]{0,3}", "[a-z]{20,60}"], 0..40),
        trailing_newline in any::<bool>(),
        split in 1u64..80,
        p in 1usize..=3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        // Each line is a JSON string naming its own line number.
        let text: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| if l.is_empty() { String::new() } else { format!("\"{}:{l}\"", i + 1) })
            .collect();
        let mut content = text.join("\n");
        if trailing_newline && !content.is_empty() {
            content.push('\n');
        }
        std::fs::write(&path, &content).unwrap();
        let (mut got, bad) = read_all::<String>(&path, LineFormat::JsonLines, split, p);
        prop_assert!(bad.is_empty());
        got.sort();
        let mut expected: Vec<String> = text.iter().filter(|l| !l.is_empty()).map(|l| l.trim_matches('"').to_string()).collect();
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn malformed_json_lines_are_set_aside_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"{\"id\":1,\"name\":\"a\"}\n").unwrap();
    f.write_all(b"{\"id\":\"two\",\"name\":\"b\"}\n").unwrap(); // wrong type
    f.write_all(b"\n").unwrap(); // blank: skipped, still counted
    f.write_all(b"{\"id\":3,\"name\":\"\xff\xfe\"}\n").unwrap(); // invalid UTF-8
    f.write_all(b"{oops\n").unwrap(); // bad JSON
    f.write_all(b"{\"id\":6,\"name\":\"f\"}").unwrap(); // no final newline
    drop(f);
    for split in [1, 5, 1_000] {
        let (good, mut bad) = read_all::<Row>(&path, LineFormat::JsonLines, split, 2);
        let mut ids: Vec<u64> = good.iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 6]);
        bad.sort_by_key(|b| b.line);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 4, 5]);
        assert!(bad[0].error.contains("invalid type"), "{}", bad[0].error);
        assert!(bad[1].error.contains("invalid UTF-8"), "{}", bad[1].error);
        assert_eq!(bad[2].raw, "{oops");
        assert_eq!(bad.iter().map(|b| b.offset).collect::<Vec<_>>(), vec![20, 45, 66]);
        assert!(bad.iter().all(|b| b.source.ends_with("rows.jsonl")));
    }

    let options = FileSourceOptions {
        fail_on_bad_input: true,
        ..Default::default()
    };
    let mut src = FileSource::<Row>::new(vec![path.clone()], LineFormat::JsonLines, options);
    let err = drain_into(&mut src, info(0, 1), &mut VecOutput::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rows.jsonl:2 (byte 20):") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn csv_header_is_read_by_every_split_and_never_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    let mut text = String::from("name,id\n");
    for i in 1..=50 {
        match i {
            10 => text.push_str("only-one-field\n"),
            20 => text.push_str("x,not-a-number\n"),
            _ => text.push_str(&format!("\"n,{i}\",{i}\n")),
        }
    }
    std::fs::write(&path, text).unwrap();
    let csv = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    for (split, p) in [(1_000, 1), (13, 3), (64, 2)] {
        let (good, mut bad) = read_all::<Row>(&path, csv.clone(), split, p);
        let mut ids: Vec<u64> = good.iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(ids, (1..=50).filter(|i| *i != 10 && *i != 20).collect::<Vec<u64>>());
        assert!(good.iter().all(|r| r.name == format!("n,{}", r.id)));
        bad.sort_by_key(|b| b.line);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![11, 21]);
        assert!(bad[0].error.contains("expected 2 fields, found 1"), "{}", bad[0].error);
    }
}

#[test]
fn missing_file_names_the_path() {
    let mut src = FileSource::<Row>::new(
        vec![PathBuf::from("/no/such/dir/input.jsonl")],
        LineFormat::JsonLines,
        FileSourceOptions::default(),
    );
    let err = drain_into(&mut src, info(0, 1), &mut VecOutput::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/dir/input.jsonl"), "{err}");
}

/// Reads some batches, snapshots, and restores the rest at another parallelism: every line
/// is read exactly once.
#[test]
fn positions_restore_exactly_at_any_parallelism() {
    use floe_runtime::{CheckpointBarrier, ManualClock, OperatorContext};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    let text: String = (1..=500).map(|i| format!("{i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let barrier = CheckpointBarrier {
        id: 1,
        timestamp: 0,
        is_savepoint: false,
    };
    for (p_before, p_after) in [(2, 1), (2, 3), (1, 2)] {
        let mut seen: Vec<u64> = Vec::new();
        let mut snapshots = Vec::new();
        for s in 0..p_before {
            let options = FileSourceOptions {
                split_size: 300,
                ..Default::default()
            };
            let mut src = FileSource::<u64>::new(vec![path.clone()], LineFormat::JsonLines, options);
            let mut ctx = OperatorContext::new(info(s, p_before), Arc::new(ManualClock::new(0)));
            src.open(&mut ctx).unwrap();
            let mut out = VecOutput::default();
            for _ in 0..5 {
                src.poll_batch(&mut ctx, &mut out).unwrap();
            }
            seen.extend(out.values::<u64>());
            snapshots.push(src.snapshot_state(&barrier, &mut ctx).unwrap());
        }
        for s in 0..p_after {
            let range = floe_checkpoints::KeyGroupRange::for_subtask(128, p_after, s);
            let part = floe_checkpoints::StateSnapshot::for_subtask(&snapshots, range, s, p_after);
            let mut src =
                FileSource::<u64>::new(vec![path.clone()], LineFormat::JsonLines, FileSourceOptions::default());
            let mut ctx = OperatorContext::new(info(s, p_after), Arc::new(ManualClock::new(0)));
            ctx.set_restored_state(part);
            src.open(&mut ctx).unwrap();
            let mut out = VecOutput::default();
            while src.poll_batch(&mut ctx, &mut out).unwrap() != SourceStatus::Finished {}
            seen.extend(out.values::<u64>());
        }
        seen.sort();
        assert_eq!(seen, (1..=500).collect::<Vec<u64>>(), "{p_before} -> {p_after}");
    }
}

/// The byte offset where line `n` (from 1) of `text` starts.
fn offset_of_line(text: &[u8], n: u64) -> u64 {
    if n == 1 {
        return 0;
    }
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n as usize - 2)
        .map(|(i, _)| i as u64 + 1)
        .unwrap()
}

#[test]
fn bad_records_name_their_file_line_and_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut text = Vec::new();
    let mut expected_bad = Vec::new();
    for i in 1..=300u64 {
        match i % 7 {
            0 => {
                expected_bad.push(i);
                text.extend_from_slice(format!("{{\"id\":{i},\"name\":}}\n").as_bytes());
            }
            3 => text.extend_from_slice(b"   \n"), // blank: skipped, counted as a line
            _ => text.extend_from_slice(format!("{{\"id\":{i},\"name\":\"n{i}\"}}\r\n").as_bytes()),
        }
    }
    std::fs::write(&path, &text).unwrap();
    for (split, p) in [(1_000_000, 1), (97, 2), (13, 3)] {
        let (good, mut bad) = read_all::<Row>(&path, LineFormat::JsonLines, split, p);
        assert_eq!(good.len(), 300 - expected_bad.len() - 43);
        bad.sort_by_key(|b| b.line);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), expected_bad);
        for b in &bad {
            assert_eq!(b.offset, offset_of_line(&text, b.line), "line {}", b.line);
            assert_eq!(b.raw, format!("{{\"id\":{},\"name\":}}", b.line));
        }
    }
}

#[test]
fn a_line_longer_than_the_limit_is_set_aside_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.jsonl");
    let long = vec![b'x'; 10 << 20];
    let mut text = b"{\"id\":1,\"name\":\"a\"}\n".to_vec();
    text.extend_from_slice(&long);
    text.push(b'\n');
    text.extend_from_slice(b"{\"id\":3,\"name\":\"c\"}\n");
    // And a 10 MB line with no newline at the end of the file.
    text.extend_from_slice(&long);
    std::fs::write(&path, &text).unwrap();
    for (split, p) in [(32 << 20, 1), (1 << 20, 2), (3 << 20, 3)] {
        let (good, mut bad) = read_all::<Row>(&path, LineFormat::JsonLines, split, p);
        assert_eq!(
            good.iter().map(|r| r.id).collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 3])
        );
        bad.sort_by_key(|b| b.line);
        assert_eq!(
            bad.iter().map(|b| (b.line, b.offset)).collect::<Vec<_>>(),
            vec![(2, 20), (4, 20 + (10 << 20) + 1 + 20)]
        );
        for b in &bad {
            assert!(
                b.error
                    .contains("record of 10485760 bytes is longer than the limit of 1048576 bytes"),
                "{}",
                b.error
            );
            assert_eq!(b.raw.len(), 64 * 1024, "the first 64 KiB of it");
        }
    }
    let options = FileSourceOptions {
        fail_on_bad_input: true,
        ..Default::default()
    };
    let mut src = FileSource::<Row>::new(vec![path.clone()], LineFormat::JsonLines, options);
    let err = drain_into(&mut src, info(0, 1), &mut VecOutput::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("long.jsonl:2 (byte 20): record of 10485760 bytes"),
        "{err}"
    );
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
struct Note {
    id: u64,
    text: String,
}

/// Writes `notes` as CSV with a header (quoting fields with delimiters, quotes or line
/// breaks) and `\r\n` or `\n` line ends.
fn write_notes(path: &std::path::Path, notes: &[Note], crlf: bool) {
    let mut w = csv::WriterBuilder::new()
        .terminator(if crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_path(path)
        .unwrap();
    for n in notes {
        w.serialize(n).unwrap();
    }
    w.flush().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// CSV fields may hold delimiters, quotes and line breaks: every record is read once, as
    /// written, for any split size and parallelism.
    #[test]
    fn csv_records_with_quoted_line_breaks_are_read_once_at_any_split(
        texts in prop::collection::vec("[a-z,\"\n\r ]{0,12}", 0..30),
        crlf in any::<bool>(),
        split in 1u64..100,
        p in 1usize..=3,
    ) {
        let notes: Vec<Note> = texts.into_iter().enumerate().map(|(i, text)| Note { id: i as u64, text }).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.csv");
        write_notes(&path, &notes, crlf);
        let csv = LineFormat::Csv { has_header: true, delimiter: b',' };
        let (mut good, bad) = read_all::<Note>(&path, csv, split, p);
        // A record that is only blanks is skipped as an empty row would be; none are here,
        // as every record has an id.
        prop_assert!(bad.is_empty(), "{:?}", bad);
        good.sort();
        prop_assert_eq!(good, notes);
    }
}

#[test]
fn a_csv_record_may_span_lines_and_later_errors_name_their_true_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.csv");
    let text = "id,text\n1,\"two\nlines\"\n2,\"with \"\"quotes\"\", and a comma\"\n3,\"three\r\nmore\nlines\"\nfour,oops\n5,plain\n";
    std::fs::write(&path, text).unwrap();
    let csv = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    for (split, p) in [(1_000, 1), (5, 2), (1, 3)] {
        let (mut good, bad) = read_all::<Note>(&path, csv.clone(), split, p);
        good.sort();
        assert_eq!(
            good.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(),
            vec![
                "two\nlines",
                "with \"quotes\", and a comma",
                "three\r\nmore\nlines",
                "plain"
            ]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line, bad[0].offset), (8, text.find("four").unwrap() as u64));
        assert_eq!(bad[0].raw, "four,oops");
    }
}

#[test]
fn a_csv_record_longer_than_the_limit_is_set_aside_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let big = "y\n".repeat(1 << 20); // 2 MiB of lines inside one quoted field
    let text = format!("id,text\n1,a\n2,\"{big}\"\n3,c\n");
    std::fs::write(&path, &text).unwrap();
    let csv = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    for (split, p) in [(32 << 20, 1), (100_000, 2), (1 << 20, 3)] {
        let (good, bad) = read_all::<Note>(&path, csv.clone(), split, p);
        assert_eq!(
            good.iter().map(|n| n.id).collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 3])
        );
        assert_eq!(bad.len(), 1, "{split}/{p}");
        assert_eq!((bad[0].line, bad[0].offset), (3, 12));
        assert!(
            bad[0].error.contains(&format!("record of {} bytes", big.len() + 4)),
            "{}",
            bad[0].error
        );
        assert_eq!(bad[0].raw.len(), 64 * 1024);
    }
}

#[test]
fn csv_without_a_header_maps_fields_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    std::fs::write(&path, "7;\"a;b\"\n\n8;c\n").unwrap();
    let csv = LineFormat::Csv {
        has_header: false,
        delimiter: b';',
    };
    let (mut good, bad) = read_all::<(u64, String)>(&path, csv, 3, 2);
    good.sort();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(good, vec![(7, "a;b".to_string()), (8, "c".to_string())]);
}

/// CSV positions in a checkpoint are record boundaries, even inside multi-line records'
/// files: restored at another parallelism, every record is read exactly once.
#[test]
fn csv_positions_restore_exactly_at_any_parallelism() {
    use floe_runtime::{CheckpointBarrier, ManualClock, OperatorContext};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.csv");
    let notes: Vec<Note> = (0..400)
        .map(|i| Note {
            id: i,
            text: if i % 3 == 0 {
                format!("line\n{i}")
            } else {
                format!("{i}")
            },
        })
        .collect();
    write_notes(&path, &notes, false);
    let csv = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    let barrier = CheckpointBarrier {
        id: 1,
        timestamp: 0,
        is_savepoint: false,
    };
    for (p_before, p_after) in [(2, 1), (2, 3), (1, 2)] {
        let mut seen: Vec<Note> = Vec::new();
        let mut snapshots = Vec::new();
        for s in 0..p_before {
            let options = FileSourceOptions {
                split_size: 300,
                ..Default::default()
            };
            let mut src = FileSource::<Note>::new(vec![path.clone()], csv.clone(), options);
            let mut ctx = OperatorContext::new(info(s, p_before), Arc::new(ManualClock::new(0)));
            src.open(&mut ctx).unwrap();
            let mut out = VecOutput::default();
            for _ in 0..5 {
                src.poll_batch(&mut ctx, &mut out).unwrap();
            }
            seen.extend(out.values::<Note>());
            snapshots.push(src.snapshot_state(&barrier, &mut ctx).unwrap());
        }
        for s in 0..p_after {
            let range = floe_checkpoints::KeyGroupRange::for_subtask(128, p_after, s);
            let part = floe_checkpoints::StateSnapshot::for_subtask(&snapshots, range, s, p_after);
            let mut src = FileSource::<Note>::new(vec![path.clone()], csv.clone(), FileSourceOptions::default());
            let mut ctx = OperatorContext::new(info(s, p_after), Arc::new(ManualClock::new(0)));
            ctx.set_restored_state(part);
            src.open(&mut ctx).unwrap();
            let mut out = VecOutput::default();
            while src.poll_batch(&mut ctx, &mut out).unwrap() != SourceStatus::Finished {}
            seen.extend(out.values::<Note>());
        }
        seen.sort();
        assert_eq!(seen, notes, "{p_before} -> {p_after}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arbitrary bytes as a JSON-lines file: no panic, and every line that is not blank
    /// comes out once, as a record or a bad record, whatever the limit, split and
    /// parallelism.
    #[test]
    fn arbitrary_bytes_as_json_lines_are_records_or_bad_records(
        bytes in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b' ')], 0..600),
        max in 1usize..64,
        split in 1u64..200,
        p in 1usize..=3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let mut expected = 0;
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        if bytes.last() == Some(&b'\n') || bytes.is_empty() {
            lines.pop();
        }
        for line in lines {
            let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max || !trimmed.iter().all(u8::is_ascii_whitespace) {
                expected += 1;
            }
        }
        let (mut good, mut bad) = (0, Vec::new());
        for s in 0..p {
            let options = FileSourceOptions { split_size: split, errors_tag: Some(9), max_record_bytes: max, ..Default::default() };
            let mut src = FileSource::<serde_json::Value>::new(vec![path.clone()], LineFormat::JsonLines, options);
            let mut out = VecOutput::default();
            drain_into(&mut src, info(s, p), &mut out).unwrap();
            good += out.values::<serde_json::Value>().len();
            bad.extend(out.side_values::<BadRecord>());
        }
        prop_assert_eq!(good + bad.len(), expected);
        for b in &bad {
            prop_assert!(b.offset < bytes.len() as u64 && b.line >= 1 && b.raw.len() <= 4 * 64 * 1024);
        }
    }

    /// Arbitrary bytes as a CSV file: no panic, and every record the `csv` crate finds comes
    /// out once, as a record or a bad record (those too long for a small limit as bad).
    #[test]
    fn arbitrary_bytes_as_csv_are_records_or_bad_records(
        bytes in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'"'), 1 => Just(b',')], 0..600),
        max in 1usize..64,
        split in 1u64..200,
        p in 1usize..=3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.csv");
        std::fs::write(&path, &bytes).unwrap();
        let oracle: Vec<csv::ByteRecord> = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[..])
            .byte_records()
            .map(|r| r.unwrap())
            .collect();
        let blank = oracle.iter().filter(|r| r.len() == 1 && r[0].iter().all(u8::is_ascii_whitespace)).count();
        let csv = LineFormat::Csv { has_header: false, delimiter: b',' };
        for limit in [usize::MAX / 2, max] {
            let (mut good, mut bad) = (0, 0);
            for s in 0..p {
                let options = FileSourceOptions { split_size: split, errors_tag: Some(9), max_record_bytes: limit, ..Default::default() };
                let mut src = FileSource::<Vec<String>>::new(vec![path.clone()], csv.clone(), options);
                let mut out = VecOutput::default();
                drain_into(&mut src, info(s, p), &mut out).unwrap();
                good += out.values::<Vec<String>>().len();
                bad += out.side_values::<BadRecord>().len();
            }
            if limit > bytes.len() {
                prop_assert_eq!(good + bad, oracle.len() - blank);
            } else {
                // A blank record over the limit is a bad record, not skipped.
                prop_assert!(good + bad >= oracle.len() - blank && good + bad <= oracle.len());
            }
        }
    }
}
