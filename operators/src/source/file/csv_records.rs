//! CSV records of a file, read by one parser from a record boundary: quoted fields may hold
//! delimiters, quotes and line breaks. Each record is at most a given length in memory: a
//! longer one is reported with its length, and reading goes on at the next record (where
//! the CSV grammar says it starts, so the records are the same whatever the limit).

use std::io;
use std::path::Path;

use csv::ByteRecord;
use csv_core::ReadRecordResult;

use super::chunks::{Chunks, CAPACITY};

/// Where a record was, and whether it was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RecordAt {
    /// File offset of its first byte.
    pub(super) start: u64,
    /// The line it starts on, from 1.
    pub(super) line: u64,
    /// Its length in bytes, terminator excluded.
    pub(super) len: u64,
    /// Whether it is longer than the limit (its fields are then not kept).
    pub(super) oversized: bool,
}

/// Reads CSV records from a record boundary.
pub(super) struct CsvRecords {
    src: Chunks,
    parser: csv_core::Reader,
    /// Field bytes and field ends of the record being read.
    out: Vec<u8>,
    ends: Vec<usize>,
    /// The fields of the last record read (unless it was oversized).
    pub(super) record: ByteRecord,
}

fn is_terminator(b: &u8) -> bool {
    *b == b'\n' || *b == b'\r'
}

impl CsvRecords {
    /// Reads `path` from byte `at`, a record boundary on line `line`.
    pub(super) fn open(path: &Path, at: u64, line: u64, delimiter: u8) -> io::Result<Self> {
        Self::with_capacity(path, at, line, delimiter, CAPACITY)
    }

    pub(super) fn with_capacity(path: &Path, at: u64, line: u64, delimiter: u8, capacity: usize) -> io::Result<Self> {
        let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        parser.set_line(line);
        Ok(CsvRecords {
            src: Chunks::open(path, at, capacity)?,
            parser,
            out: vec![0; 1024],
            ends: vec![0; 32],
            record: ByteRecord::new(),
        })
    }

    /// The offset and line of the next record boundary.
    pub(super) fn boundary(&self) -> (u64, u64) {
        (self.src.pos(), self.parser.line())
    }

    /// Skips empty lines, so that a record starts at its first byte; whether a record
    /// follows.
    fn skip_empty_lines(&mut self) -> io::Result<bool> {
        loop {
            let data = self.src.data()?;
            if data.is_empty() {
                return Ok(false);
            }
            let n = data.iter().take_while(|b| is_terminator(b)).count();
            let lines = memchr::memchr_iter(b'\n', &data[..n]).count() as u64;
            let more = n < data.len();
            self.src.consume(n);
            self.parser.set_line(self.parser.line() + lines);
            if more {
                return Ok(true);
            }
        }
    }

    /// Reads the next record if it starts before `end`: its fields into
    /// [`record`](Self::record) unless it is longer than `max` bytes. `None` at the end of
    /// the file or at a record starting at or after `end`.
    pub(super) fn next(&mut self, max: usize, end: u64) -> io::Result<Option<RecordAt>> {
        self.read(max, end, true)
    }

    /// Skips to the first record that starts at or after byte `to`.
    pub(super) fn skip_to(&mut self, to: u64) -> io::Result<()> {
        while self.read(0, to, false)?.is_some() {}
        Ok(())
    }

    fn read(&mut self, max: usize, end: u64, keep: bool) -> io::Result<Option<RecordAt>> {
        if !self.skip_empty_lines()? || self.src.pos() >= end {
            return Ok(None);
        }
        let (start, line) = (self.src.pos(), self.parser.line());
        // Past `max + 1` bytes (a terminator may be the last) the record is too long.
        let budget = max.saturating_add(1) as u64;
        let mut dropping = !keep;
        let (mut len, mut nout, mut nend) = (0u64, 0usize, 0usize);
        let mut last = 0u8;
        loop {
            let data = self.src.data()?;
            let (result, read, wrote, ended) =
                self.parser
                    .read_record(data, &mut self.out[nout..], &mut self.ends[nend..]);
            if read > 0 {
                last = data[read - 1];
            }
            self.src.consume(read);
            len += read as u64;
            nout += wrote;
            nend += ended;
            dropping |= len > budget;
            if dropping {
                // Parse on to the record's end, keeping nothing.
                (nout, nend) = (0, 0);
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull if !dropping => {
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull if !dropping => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => break,
                ReadRecordResult::End if len == 0 => return Ok(None),
                ReadRecordResult::End => break,
            }
        }
        // The terminator was read with the record (one byte: the `\n` of a `\r\n` is
        // skipped as an empty line before the next record).
        if is_terminator(&last) {
            len -= 1;
        }
        let oversized = len > max as u64;
        if keep && !oversized {
            self.record.clear();
            let mut from = 0;
            for &to in &self.ends[..nend] {
                self.record.push_field(&self.out[from..to]);
                from = to;
            }
        }
        Ok(Some(RecordAt {
            start,
            line,
            len,
            oversized,
        }))
    }

    /// Up to `len` bytes of the file from `at`, to show a bad record.
    pub(super) fn raw(&mut self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.src.read_at(at, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every record of `path`: (start, line, fields).
    fn all(path: &Path, capacity: usize) -> Vec<(u64, u64, Vec<Vec<u8>>)> {
        let mut r = CsvRecords::with_capacity(path, 0, 1, b',', capacity).unwrap();
        let mut out = Vec::new();
        while let Some(at) = r.next(usize::MAX - 1, u64::MAX).unwrap() {
            out.push((at.start, at.line, r.record.iter().map(<[u8]>::to_vec).collect()));
        }
        out
    }

    proptest! {
        /// The records are the `csv` crate's (the oracle), whatever the buffer size; each
        /// starts at a byte that is not a line break, on the line the text says; skipping
        /// to any offset lands on the first record starting there or after; a limit drops
        /// the fields of longer records but not the records.
        #[test]
        fn records_are_the_csv_crates(
            text in prop::collection::vec(prop::sample::select(b"ab,\"\n\r".to_vec()), 0..120),
            capacity in 16usize..48,
            to in 0u64..130,
            max in 0usize..20,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.csv");
            std::fs::write(&path, &text).unwrap();
            let mut oracle = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
            let expected: Vec<Vec<Vec<u8>>> = oracle
                .byte_records()
                .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
                .collect();
            let got = all(&path, capacity);
            let fields: Vec<Vec<Vec<u8>>> = got.iter().map(|g| g.2.clone()).collect();
            prop_assert_eq!(&fields, &expected);
            for (start, line, _) in &got {
                prop_assert!(!is_terminator(&text[*start as usize]));
                let newlines = text[..*start as usize].iter().filter(|b| **b == b'\n').count() as u64;
                prop_assert_eq!(*line, newlines + 1);
            }

            let mut r = CsvRecords::with_capacity(&path, 0, 1, b',', capacity).unwrap();
            r.skip_to(to).unwrap();
            let next = r.next(usize::MAX - 1, u64::MAX).unwrap().map(|at| (at.start, at.line));
            prop_assert_eq!(next, got.iter().find(|g| g.0 >= to).map(|g| (g.0, g.1)));

            let mut limited = CsvRecords::with_capacity(&path, 0, 1, b',', capacity).unwrap();
            let mut starts = Vec::new();
            while let Some(at) = limited.next(max, u64::MAX).unwrap() {
                if !at.oversized {
                    prop_assert!(at.len <= max as u64);
                    let fields: Vec<Vec<u8>> = limited.record.iter().map(<[u8]>::to_vec).collect();
                    prop_assert_eq!(&fields, &got[starts.len()].2);
                }
                starts.push(at.start);
            }
            prop_assert_eq!(starts, got.iter().map(|g| g.0).collect::<Vec<_>>());
        }
    }
}
