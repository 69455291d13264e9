//! Files of records (JSON lines, CSV), split into byte ranges.
//!
//! Each file is cut into splits of `split_size` bytes; split `j` (counting over all files in
//! order) is read by subtask `j % parallelism`. A split owns exactly the records that
//! *start* inside it, so every record is read once whatever the split size: a JSON record
//! is a line; a CSV record is what the CSV grammar says, so a quoted field may hold line
//! breaks (a subtask finds where records start by parsing from the start of the file, or
//! from where its previous split of the file ended).
//!
//! A record longer than `max_record_bytes` is never held in memory whole: it goes to the bad
//! records (or fails the job with `fail_on_bad_input`) with its length and first bytes, and
//! reading goes on at the next record. Bad records carry their origin: the file, the line
//! the record starts on (from 1) and its byte offset.

mod chunks;
mod csv_records;
mod lines;

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::{
    CheckpointBarrier, Data, OperatorContext, Output, Record, Result, RuntimeError, SourceFunction, SourceStatus,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use self::csv_records::CsvRecords;
use self::lines::Lines;

/// Longest raw text kept in a [`BadRecord`].
const MAX_RAW: usize = 64 * 1024;

/// The default of [`FileSourceOptions::max_record_bytes`]: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// How records are written in the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON document per line.
    JsonLines,
    /// Comma (or other) separated values (RFC 4180: a quoted field may hold delimiters,
    /// doubled quotes and line breaks); with a header row, fields map to struct fields by
    /// name, else by position.
    Csv {
        /// Whether the first record of each file names the columns.
        has_header: bool,
        /// Field separator.
        delimiter: u8,
    },
}

/// Options of a file source.
#[derive(Clone, Debug)]
pub struct FileSourceOptions {
    /// Bytes per split.
    pub split_size: u64,
    /// Fail the job at the first malformed record instead of setting it aside.
    pub fail_on_bad_input: bool,
    /// Side output for malformed records; without one they are logged.
    pub errors_tag: Option<u64>,
    /// Longest record (bytes, its line break excluded); a longer one is a bad record.
    pub max_record_bytes: usize,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        FileSourceOptions {
            split_size: 32 * 1024 * 1024,
            fail_on_bad_input: false,
            errors_tag: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// A record that could not be read, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The file.
    pub source: String,
    /// The line the record starts on, from 1.
    pub line: u64,
    /// The byte offset in the file where the record starts.
    #[serde(default)]
    pub offset: u64,
    /// The record (lossy UTF-8, at most 64 KiB: the first bytes of a longer one).
    pub raw: String,
    /// Why it was rejected.
    pub error: String,
}

/// A split: the records starting in `start..end` of a file.
#[derive(Serialize, Deserialize)]
struct Split {
    path: PathBuf,
    start: u64,
    end: u64,
    /// Set when `start` is known to be a record boundary (a split resumed from a
    /// checkpoint): the line it is on.
    line: Option<u64>,
}

/// What reads a file.
enum Reader {
    Json(Lines),
    Csv(Box<CsvRecords>),
}

impl Reader {
    /// The offset and line of the next record boundary.
    fn boundary(&self) -> (u64, u64) {
        match self {
            Reader::Json(r) => r.boundary(),
            Reader::Csv(r) => r.boundary(),
        }
    }

    fn skip_to(&mut self, to: u64) -> std::io::Result<()> {
        match self {
            Reader::Json(r) => r.skip_to(to),
            Reader::Csv(r) => r.skip_to(to),
        }
    }
}

/// The split being read.
struct Current {
    path: PathBuf,
    name: String,
    reader: Reader,
    end: u64,
}

/// The header of a CSV file and where the records after it start.
struct Header {
    path: PathBuf,
    fields: Option<ByteRecord>,
    after: (u64, u64),
}

/// Reads files of records into records of `T`.
///
/// ```
/// use floe_operators::source::file::{FileSource, FileSourceOptions, LineFormat};
/// let source: FileSource<serde_json::Value> =
///     FileSource::new(vec!["events.jsonl".into()], LineFormat::JsonLines, FileSourceOptions::default());
/// # let _ = source;
/// ```
pub struct FileSource<T> {
    paths: Vec<PathBuf>,
    format: LineFormat,
    options: FileSourceOptions,
    splits: VecDeque<Split>,
    current: Option<Current>,
    /// The reader of the last split finished, kept to go on to the next split of the same
    /// file without parsing it from the start again.
    parked: Option<Current>,
    /// The header of the CSV file read last.
    header: Option<Header>,
    bad_logged: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> FileSource<T> {
    /// A source over `paths`.
    pub fn new(paths: Vec<PathBuf>, format: LineFormat, options: FileSourceOptions) -> Self {
        FileSource {
            paths,
            format,
            options,
            splits: VecDeque::new(),
            current: None,
            parked: None,
            header: None,
            bad_logged: 0,
            _t: PhantomData,
        }
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::external(format!("{what} {}", path.display()), e)
}

/// The first bytes of a record, as text.
fn shown(raw: &[u8]) -> String {
    let mut raw = String::from_utf8_lossy(&raw[..raw.len().min(MAX_RAW)]).into_owned();
    if raw.len() > MAX_RAW {
        let mut cut = MAX_RAW;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw.truncate(cut);
    }
    raw
}

/// Where a bad record is, and what is wrong with it.
struct Bad {
    line: u64,
    offset: u64,
    raw: String,
    error: String,
}

fn too_long(len: u64, max: usize) -> String {
    format!("record of {len} bytes is longer than the limit of {max} bytes (--max-record-bytes)")
}

impl<T: DeserializeOwned + Data> FileSource<T> {
    fn csv_header(&mut self, path: &Path, delimiter: u8) -> Result<&Header> {
        if self.header.as_ref().is_none_or(|h| h.path != path) {
            let mut r = CsvRecords::open(path, 0, 1, delimiter).map_err(|e| io_err(path, "opening", e))?;
            let first = r
                .next(self.options.max_record_bytes, u64::MAX)
                .map_err(|e| io_err(path, "reading", e))?;
            let fields = match first {
                None => None,
                Some(at) if at.oversized => {
                    return Err(RuntimeError::InvalidRecord(format!(
                        "{}:{}: unreadable CSV header: {}",
                        path.display(),
                        at.line,
                        too_long(at.len, self.options.max_record_bytes)
                    )))
                }
                Some(_) => Some(r.record.clone()),
            };
            self.header = Some(Header {
                path: path.to_path_buf(),
                fields,
                after: r.boundary(),
            });
        }
        self.header
            .as_ref()
            .ok_or_else(|| RuntimeError::Internal("CSV header not read".into()))
    }

    /// A reader positioned at the first record of `split`.
    fn open_split(&mut self, split: &Split) -> Result<Current> {
        let path = &split.path;
        let mut from = match split.line {
            Some(line) => (split.start, line),
            None => (0, 1),
        };
        if let LineFormat::Csv {
            has_header: true,
            delimiter,
        } = self.format
        {
            let after = self.csv_header(path, delimiter)?.after;
            if from.0 < after.0 {
                from = after;
            }
        }
        // Go on from where the last split finished, if it was of the same file and ended at
        // or before this one's start: no record starts between its end and the boundary it
        // stopped at, so the first record at or after this split's start is at or after
        // that boundary. (Splits restored from a checkpoint come in any order.)
        let parked = self
            .parked
            .take()
            .filter(|p| p.path == *path && split.line.is_none() && p.end <= split.start);
        let mut current = match parked {
            Some(p) => p,
            None => {
                let reader = match self.format {
                    LineFormat::JsonLines => Lines::open(path, from.0, from.1).map(Reader::Json),
                    LineFormat::Csv { delimiter, .. } => {
                        CsvRecords::open(path, from.0, from.1, delimiter).map(|r| Reader::Csv(Box::new(r)))
                    }
                };
                Current {
                    path: path.clone(),
                    name: path.display().to_string(),
                    reader: reader.map_err(|e| io_err(path, "opening", e))?,
                    end: split.end,
                }
            }
        };
        current.end = split.end;
        current
            .reader
            .skip_to(split.start)
            .map_err(|e| io_err(path, "reading", e))?;
        Ok(current)
    }

    /// Sets aside (or fails on) a bad record.
    fn reject(&mut self, name: &str, bad: Bad, out: &mut Vec<Record<BadRecord>>) -> Result<()> {
        if self.options.fail_on_bad_input {
            let shown: String = bad.raw.chars().take(200).collect();
            return Err(RuntimeError::InvalidRecord(format!(
                "{name}:{} (byte {}): {}: {shown}",
                bad.line, bad.offset, bad.error
            )));
        }
        if self.options.errors_tag.is_some() {
            out.push(Record::untimed(BadRecord {
                source: name.to_string(),
                line: bad.line,
                offset: bad.offset,
                raw: bad.raw,
                error: bad.error,
            }));
        } else {
            self.bad_logged += 1;
            let shown: String = bad.raw.chars().take(200).collect();
            warn!(file = name, line = bad.line, offset = bad.offset, error = %bad.error, raw = %shown, total = self.bad_logged, "malformed input record skipped");
        }
        Ok(())
    }

    /// Reads records of the current split until `records` holds `max`; whether the split
    /// is finished.
    fn read_json(
        &mut self,
        current: &mut Current,
        records: &mut Vec<Record<T>>,
        bad: &mut Vec<Record<BadRecord>>,
        max: usize,
    ) -> Result<bool> {
        let Reader::Json(lines) = &mut current.reader else {
            return Err(RuntimeError::Internal("a JSON split without a line reader".into()));
        };
        let limit = self.options.max_record_bytes;
        while records.len() < max {
            if lines.boundary().0 >= current.end {
                return Ok(true); // the next line is the next split's
            }
            let Some(line) = lines.next(limit).map_err(|e| io_err(&current.path, "reading", e))? else {
                return Ok(true);
            };
            let rejected = if line.len > limit as u64 {
                Some(too_long(line.len, limit))
            } else if line.bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            } else {
                match std::str::from_utf8(line.bytes) {
                    Err(e) => Some(format!("invalid UTF-8: {e}")),
                    Ok(text) => match serde_json::from_str(text) {
                        Ok(v) => {
                            records.push(Record::untimed(v));
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    },
                }
            };
            if let Some(error) = rejected {
                let b = Bad {
                    line: line.number,
                    offset: line.start,
                    raw: shown(line.bytes),
                    error,
                };
                self.reject(&current.name, b, bad)?;
            }
        }
        Ok(false)
    }

    /// As [`read_json`](Self::read_json), for CSV.
    fn read_csv(
        &mut self,
        current: &mut Current,
        records: &mut Vec<Record<T>>,
        bad: &mut Vec<Record<BadRecord>>,
        max: usize,
    ) -> Result<bool> {
        let limit = self.options.max_record_bytes;
        let header = match &self.header {
            Some(h) if h.path == current.path => h.fields.clone(),
            _ => None,
        };
        while records.len() < max {
            let Reader::Csv(csv) = &mut current.reader else {
                return Err(RuntimeError::Internal("a CSV split without a CSV reader".into()));
            };
            let Some(at) = csv
                .next(limit, current.end)
                .map_err(|e| io_err(&current.path, "reading", e))?
            else {
                return Ok(true);
            };
            let error = if at.oversized {
                too_long(at.len, limit)
            } else {
                let r = &csv.record;
                if r.len() == 1 && r[0].iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match &header {
                    Some(h) if h.len() != r.len() => format!("expected {} fields, found {}", h.len(), r.len()),
                    _ => match r.deserialize::<T>(header.as_ref()) {
                        Ok(v) => {
                            records.push(Record::untimed(v));
                            continue;
                        }
                        Err(e) => e.to_string(),
                    },
                }
            };
            let raw = csv
                .raw(at.start, usize::try_from(at.len).unwrap_or(usize::MAX).min(MAX_RAW))
                .map_err(|e| io_err(&current.path, "reading", e))?;
            let b = Bad {
                line: at.line,
                offset: at.start,
                raw: shown(&raw),
                error,
            };
            self.reject(&current.name, b, bad)?;
        }
        Ok(false)
    }
}

impl<T: DeserializeOwned + Data> SourceFunction for FileSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        if let Some(s) = ctx.restored_state() {
            self.splits = s
                .operator
                .iter()
                .map(|b| decode(b))
                .collect::<std::result::Result<_, _>>()?;
            return Ok(());
        }
        let (me, p) = (ctx.info().subtask_index, ctx.info().parallelism.max(1));
        let size = self.options.split_size.max(1);
        let mut j = 0usize;
        for path in &self.paths {
            let len = std::fs::metadata(path).map_err(|e| io_err(path, "opening", e))?.len();
            let mut start = 0;
            while start < len {
                let end = (start + size).min(len);
                if j % p == me {
                    self.splits.push_back(Split {
                        path: path.clone(),
                        start,
                        end,
                        line: None,
                    });
                }
                j += 1;
                start = end;
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        let current = self.current.as_ref().map(|c| {
            let (start, line) = c.reader.boundary();
            Split {
                path: c.path.clone(),
                start,
                end: c.end,
                line: Some(line),
            }
        });
        let operator = current
            .iter()
            .chain(self.splits.iter())
            .map(encode)
            .collect::<std::result::Result<_, _>>()?;
        Ok(StateSnapshot {
            operator,
            ..StateSnapshot::default()
        })
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let max = ctx.info().batch_size.max(1);
        let mut records: Vec<Record<T>> = Vec::with_capacity(max);
        let mut bad: Vec<Record<BadRecord>> = Vec::new();
        while records.len() < max {
            let mut current = match self.current.take() {
                Some(c) => c,
                None => match self.splits.pop_front() {
                    Some(split) => self.open_split(&split)?,
                    None => break,
                },
            };
            let finished = match self.format {
                LineFormat::JsonLines => self.read_json(&mut current, &mut records, &mut bad, max)?,
                LineFormat::Csv { .. } => self.read_csv(&mut current, &mut records, &mut bad, max)?,
            };
            if finished {
                self.parked = Some(current);
            } else {
                self.current = Some(current);
            }
        }
        let done = self.current.is_none() && self.splits.is_empty();
        if done {
            self.parked = None;
        }
        if let (Some(tag), false) = (self.options.errors_tag, bad.is_empty()) {
            out.emit_side(tag, Box::new(bad))?;
        }
        if !records.is_empty() {
            out.emit(Box::new(records))?;
        }
        Ok(if done {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod throughput;
