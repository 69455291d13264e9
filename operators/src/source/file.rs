//! Line-oriented file sources (JSON lines, CSV), split into byte ranges.
//!
//! Each file is cut into splits of `split_size` bytes; split `j` (counting over all files in
//! order) is read by subtask `j % parallelism`. A split owns exactly the lines that *start*
//! inside it, so every line is read once whatever the split size. Lines are numbered from
//! the start of their file. CSV fields may be quoted but may not contain line breaks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::PathBuf;

use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::{
    CheckpointBarrier, Data, OperatorContext, Output, Record, Result, RuntimeError, SourceFunction, SourceStatus,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

/// Longest raw text kept in a [`BadRecord`].
const MAX_RAW: usize = 64 * 1024;

/// How lines are parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON document per line.
    JsonLines,
    /// Comma (or other) separated values; with a header row, fields map to struct fields by
    /// name, else by position.
    Csv {
        /// Whether the first line of each file names the columns.
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
    /// Fail the job at the first malformed line instead of setting it aside.
    pub fail_on_bad_input: bool,
    /// Side output for malformed lines; without one they are logged.
    pub errors_tag: Option<u64>,
}

impl Default for FileSourceOptions {
    fn default() -> Self {
        FileSourceOptions {
            split_size: 32 * 1024 * 1024,
            fail_on_bad_input: false,
            errors_tag: None,
        }
    }
}

/// A line that could not be read as a record, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The file.
    pub source: String,
    /// Line number in the file, from 1.
    pub line: u64,
    /// The line (lossy UTF-8, at most 64 KiB).
    pub raw: String,
    /// Why it was rejected.
    pub error: String,
}

#[derive(Serialize, Deserialize)]
struct Split {
    path: PathBuf,
    start: u64,
    end: u64,
    /// Set when `start` is known to begin a line (a split resumed from a checkpoint): that
    /// line's number.
    line: Option<u64>,
}

struct SplitReader {
    path: PathBuf,
    name: String,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    line_no: u64,
    headers: Option<csv::StringRecord>,
}

/// Reads files of lines into records of `T`.
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
    current: Option<SplitReader>,
    line: Vec<u8>,
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
            line: Vec::new(),
            bad_logged: 0,
            _t: PhantomData,
        }
    }
}

fn io_err(path: &std::path::Path, what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::external(format!("{what} {}", path.display()), e)
}

/// Counts the newlines before byte `pos`.
fn newlines_before(file: &mut File, pos: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut take = file.take(pos);
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let read = take.read(&mut buf)?;
        if read == 0 {
            return Ok(n);
        }
        n += buf[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<T: DeserializeOwned + Data> FileSource<T> {
    fn open_split(&self, split: &Split) -> Result<SplitReader> {
        let path = &split.path;
        let mut file = File::open(path).map_err(|e| io_err(path, "opening", e))?;
        let mut headers = None;
        if let LineFormat::Csv {
            has_header: true,
            delimiter,
        } = self.format
        {
            let mut first = Vec::new();
            BufReader::new(&mut file)
                .read_until(b'\n', &mut first)
                .map_err(|e| io_err(path, "reading", e))?;
            headers = Some(parse_csv(trim_line(&first), delimiter).map_err(|e| {
                RuntimeError::InvalidRecord(format!("{}:1: unreadable CSV header: {e}", path.display()))
            })?);
        }
        let mut pos = split.start;
        if split.start > 0 && split.line.is_none() {
            // The line that starts at `start` is ours only if a newline ends the one before.
            file.seek(SeekFrom::Start(split.start - 1))
                .map_err(|e| io_err(path, "reading", e))?;
            let mut skip = Vec::new();
            let mut r = BufReader::new(&mut file);
            let n = r.read_until(b'\n', &mut skip).map_err(|e| io_err(path, "reading", e))?;
            pos = split.start - 1 + n as u64;
        }
        let line_no = if pos == 0 {
            1
        } else if let Some(line) = split.line {
            line
        } else {
            newlines_before(&mut file, pos).map_err(|e| io_err(path, "reading", e))? + 1
        };
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| io_err(path, "reading", e))?;
        Ok(SplitReader {
            path: path.clone(),
            name: path.display().to_string(),
            reader: BufReader::with_capacity(256 * 1024, file),
            pos,
            end: split.end,
            line_no,
            headers,
        })
    }

    fn parse(&self, line: &[u8], headers: Option<&csv::StringRecord>) -> std::result::Result<T, String> {
        let text = std::str::from_utf8(line).map_err(|e| format!("invalid UTF-8: {e}"))?;
        match &self.format {
            LineFormat::JsonLines => serde_json::from_str(text).map_err(|e| e.to_string()),
            LineFormat::Csv { delimiter, .. } => {
                let record = parse_csv(line, *delimiter)?;
                if let Some(h) = headers {
                    if h.len() != record.len() {
                        return Err(format!("expected {} fields, found {}", h.len(), record.len()));
                    }
                }
                record.deserialize(headers).map_err(|e| e.to_string())
            }
        }
    }

    fn reject(
        &mut self,
        name: &str,
        line_no: u64,
        raw: &[u8],
        error: String,
        bad: &mut Vec<Record<BadRecord>>,
    ) -> Result<()> {
        let mut raw = String::from_utf8_lossy(raw).into_owned();
        if raw.len() > MAX_RAW {
            let mut cut = MAX_RAW;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
        }
        if self.options.fail_on_bad_input {
            let shown: String = raw.chars().take(200).collect();
            return Err(RuntimeError::InvalidRecord(format!(
                "{name}:{line_no}: {error}: {shown}"
            )));
        }
        if self.options.errors_tag.is_some() {
            bad.push(Record::untimed(BadRecord {
                source: name.to_string(),
                line: line_no,
                raw,
                error,
            }));
        } else {
            self.bad_logged += 1;
            let shown: String = raw.chars().take(200).collect();
            warn!(file = name, line = line_no, %error, raw = %shown, total = self.bad_logged, "malformed input line skipped");
        }
        Ok(())
    }
}

fn parse_csv(line: &[u8], delimiter: u8) -> std::result::Result<csv::StringRecord, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record),
        Ok(false) => Err("empty CSV row".into()),
        Err(e) => Err(e.to_string()),
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
        let current = self.current.as_ref().map(|r| Split {
            path: r.path.clone(),
            start: r.pos,
            end: r.end,
            line: Some(r.line_no),
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
            let mut reader = match self.current.take() {
                Some(r) => r,
                None => match self.splits.pop_front() {
                    Some(split) => self.open_split(&split)?,
                    None => break,
                },
            };
            let mut line = std::mem::take(&mut self.line);
            let mut finished = false;
            while records.len() < max {
                if reader.pos >= reader.end {
                    finished = true;
                    break;
                }
                line.clear();
                let n = reader
                    .reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| RuntimeError::external(format!("reading {}", reader.name), e))?;
                if n == 0 {
                    finished = true;
                    break;
                }
                reader.pos += n as u64;
                let line_no = reader.line_no;
                reader.line_no += 1;
                let content = trim_line(&line);
                if content.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if line_no == 1 && reader.headers.is_some() {
                    continue; // the header row
                }
                match self.parse(content, reader.headers.as_ref()) {
                    Ok(v) => records.push(Record::untimed(v)),
                    Err(e) => self.reject(&reader.name, line_no, content, e, &mut bad)?,
                }
            }
            self.line = line;
            if !finished {
                self.current = Some(reader);
            }
        }
        let done = self.current.is_none() && self.splits.is_empty();
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
