//! Lines of a file, each at most a given length in memory: a longer line is reported with
//! its length and first bytes, and reading goes on at the next line.

use std::io;
use std::path::Path;

use super::chunks::{Chunks, CAPACITY};

/// One line, without its `\n` (and `\r\n`'s `\r`).
pub(super) struct Line<'a> {
    /// File offset of its first byte.
    pub(super) start: u64,
    /// Its number in the file, from 1.
    pub(super) number: u64,
    /// Its length in bytes, terminator excluded.
    pub(super) len: u64,
    /// The line; of a line longer than the limit, only its first bytes.
    pub(super) bytes: &'a [u8],
}

/// Reads lines from a line start.
pub(super) struct Lines {
    src: Chunks,
    /// The number of the next line.
    number: u64,
    /// A line longer than the buffer, gathered (up to the limit).
    spill: Vec<u8>,
    /// Buffered bytes of the line returned last, consumed at the next call.
    pending: usize,
}

/// A line as returned: without the `\r` of a `\r\n` if it is within the limit, else as
/// read (it is only shown, never parsed).
fn kept(line: &[u8], len: u64, max: usize) -> &[u8] {
    if len <= max as u64 {
        line.strip_suffix(b"\r").unwrap_or(line)
    } else {
        line
    }
}

impl Lines {
    /// Reads `path` from byte `at`, the start of line `number`.
    pub(super) fn open(path: &Path, at: u64, number: u64) -> io::Result<Self> {
        Self::with_capacity(path, at, number, CAPACITY)
    }

    pub(super) fn with_capacity(path: &Path, at: u64, number: u64, capacity: usize) -> io::Result<Self> {
        Ok(Lines {
            src: Chunks::open(path, at, capacity)?,
            number,
            spill: Vec::new(),
            pending: 0,
        })
    }

    /// The offset and number of the next line's start.
    pub(super) fn boundary(&self) -> (u64, u64) {
        (self.src.pos() + self.pending as u64, self.number)
    }

    /// The next line; of a line longer than `max` bytes, at most `max + 1` bytes are kept.
    /// `None` at the end of the file.
    pub(super) fn next(&mut self, max: usize) -> io::Result<Option<Line<'_>>> {
        self.src.consume(std::mem::take(&mut self.pending));
        let start = self.src.pos();
        let number = self.number;
        // Most lines are whole in the buffer: no copy.
        let mut searched = 0;
        loop {
            let data = self.src.buffered();
            if let Some(i) = memchr::memchr(b'\n', &data[searched..]) {
                let end = searched + i;
                self.pending = end + 1;
                self.number += 1;
                return Ok(Some(Line {
                    start,
                    number,
                    len: end as u64,
                    bytes: kept(&self.src.buffered()[..end], end as u64, max),
                }));
            }
            searched = data.len();
            if self.src.is_full() {
                break; // longer than the buffer
            }
            if self.src.fill_more()? == 0 && !self.src.is_full() {
                // The end of the file: the last line has no `\n`.
                if searched == 0 {
                    return Ok(None);
                }
                self.pending = searched;
                self.number += 1;
                return Ok(Some(Line {
                    start,
                    number,
                    len: searched as u64,
                    bytes: kept(self.src.buffered(), searched as u64, max),
                }));
            }
        }
        // A line longer than the buffer: keep what the limit allows, skip the rest.
        self.spill.clear();
        let keep = max.saturating_add(1);
        let mut len = 0u64;
        loop {
            let data = self.src.data()?;
            if data.is_empty() {
                break;
            }
            let (part, found) = match memchr::memchr(b'\n', data) {
                Some(i) => (i, true),
                None => (data.len(), false),
            };
            let room = keep.saturating_sub(self.spill.len()).min(part);
            self.spill.extend_from_slice(&data[..room]);
            len += part as u64;
            self.src.consume(part + usize::from(found));
            if found {
                break;
            }
        }
        self.number += 1;
        Ok(Some(Line {
            start,
            number,
            len,
            bytes: kept(&self.spill, len, max),
        }))
    }

    /// Skips to the first line that starts at or after byte `to`, counting the lines passed,
    /// without keeping any of them.
    pub(super) fn skip_to(&mut self, to: u64) -> io::Result<()> {
        self.src.consume(std::mem::take(&mut self.pending));
        if self.src.pos() >= to {
            return Ok(());
        }
        // Count the line starts before `to`: a line starts after each `\n` at or before
        // `to - 1`.
        let last = to - 1;
        loop {
            let pos = self.src.pos();
            let data = self.src.data()?;
            if data.is_empty() {
                return Ok(());
            }
            let before = usize::try_from(last - pos).map_or(data.len(), |n| n.min(data.len()));
            self.number += memchr::memchr_iter(b'\n', &data[..before]).count() as u64;
            self.src.consume(before);
            if self.src.pos() == last {
                break;
            }
        }
        // The byte before `to`: a line starts at `to` if it is a `\n`, else after the next one.
        loop {
            let data = self.src.data()?;
            if data.is_empty() {
                return Ok(());
            }
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    self.src.consume(i + 1);
                    self.number += 1;
                    return Ok(());
                }
                None => {
                    let n = data.len();
                    self.src.consume(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(path: &Path, at: u64, number: u64, capacity: usize, max: usize) -> Vec<(u64, u64, u64, Vec<u8>)> {
        let mut lines = Lines::with_capacity(path, at, number, capacity).unwrap();
        let mut out = Vec::new();
        while let Some(l) = lines.next(max).unwrap() {
            out.push((l.start, l.number, l.len, l.bytes.to_vec()));
        }
        out
    }

    proptest! {
        /// Whatever the buffer size, every line comes out once with its offset, number and
        /// length; lines over the limit keep `max + 1` bytes; skipping to any offset lands on
        /// the first line starting there or after.
        #[test]
        fn lines_split_like_the_text(
            text in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'b')], 0..200),
            capacity in 16usize..64,
            max in 0usize..40,
            to in 0u64..220,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, &text).unwrap();
            let mut expected = Vec::new();
            let mut start = 0usize;
            for (n, piece) in text.split(|b| *b == b'\n').enumerate() {
                if start == text.len() {
                    break; // nothing after a final `\n`
                }
                let kept: Vec<u8> = if piece.len() <= max {
                    piece.strip_suffix(b"\r").unwrap_or(piece).to_vec()
                } else {
                    piece[..piece.len().min(max + 1)].to_vec()
                };
                expected.push((start as u64, n as u64 + 1, piece.len() as u64, kept));
                start += piece.len() + 1;
            }
            let got = all(&path, 0, 1, capacity, max);
            // A line over the limit that fits the buffer is returned whole; compare what the
            // limit keeps.
            let got: Vec<_> = got
                .into_iter()
                .map(|(s, n, len, b)| {
                    let b = if len as usize > max { b[..b.len().min(max + 1)].to_vec() } else { b };
                    (s, n, len, b)
                })
                .collect();
            prop_assert_eq!(&got, &expected);

            let mut lines = Lines::with_capacity(&path, 0, 1, capacity).unwrap();
            lines.skip_to(to).unwrap();
            let (at, number) = lines.boundary();
            let first = expected.iter().find(|e| e.0 >= to);
            match first {
                Some(e) => prop_assert_eq!((at, number), (e.0, e.1)),
                None => prop_assert!(lines.next(usize::MAX).unwrap().is_none()),
            }
        }
    }
}
