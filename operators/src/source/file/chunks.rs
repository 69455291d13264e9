//! A file read through one buffer, at known byte offsets: what the line and record readers
//! stand on. Memory is the buffer, whatever the file holds.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the file at a time.
pub(super) const CAPACITY: usize = 256 * 1024;

/// A file and the bytes of it read but not consumed yet.
pub(super) struct Chunks {
    file: File,
    buf: Box<[u8]>,
    /// The unconsumed bytes are `buf[lo..hi]`.
    lo: usize,
    hi: usize,
    /// File offset of `buf[lo]`.
    pos: u64,
    eof: bool,
}

impl Chunks {
    /// Reads `path` from byte `at`, `capacity` bytes at a time.
    pub(super) fn open(path: &Path, at: u64, capacity: usize) -> io::Result<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(at))?;
        Ok(Chunks {
            file,
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            lo: 0,
            hi: 0,
            pos: at,
            eof: false,
        })
    }

    /// File offset of the next unconsumed byte.
    pub(super) fn pos(&self) -> u64 {
        self.pos
    }

    /// The unconsumed bytes in the buffer (maybe none).
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    /// The unconsumed bytes, reading more if there are none: empty only at the end of the
    /// file.
    pub(super) fn data(&mut self) -> io::Result<&[u8]> {
        if self.lo == self.hi {
            self.lo = 0;
            self.hi = 0;
            self.read_more()?;
        }
        Ok(self.buffered())
    }

    /// Whether the buffer holds as much as it can.
    pub(super) fn is_full(&self) -> bool {
        self.hi - self.lo == self.buf.len()
    }

    /// Moves the unconsumed bytes to the front of the buffer and reads more after them;
    /// how many came (0: the end of the file, or the buffer is full).
    pub(super) fn fill_more(&mut self) -> io::Result<usize> {
        if self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
        self.read_more()
    }

    fn read_more(&mut self) -> io::Result<usize> {
        if self.eof || self.hi == self.buf.len() {
            return Ok(0);
        }
        loop {
            match self.file.read(&mut self.buf[self.hi..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.hi += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Marks the first `n` unconsumed bytes consumed.
    pub(super) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.hi - self.lo);
        self.lo += n;
        self.pos += n as u64;
    }

    /// Up to `len` bytes of the file from offset `at` (for showing a bad record), leaving
    /// the reading position where it was.
    pub(super) fn read_at(&mut self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let resume = self.file.stream_position()?;
        self.file.seek(SeekFrom::Start(at))?;
        let mut out = Vec::with_capacity(len.min(64 * 1024));
        let read = (&mut self.file).take(len as u64).read_to_end(&mut out);
        self.file.seek(SeekFrom::Start(resume))?;
        read.map(|_| out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_what_is_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        let mut c = Chunks::open(&path, 3, 16).unwrap();
        assert_eq!(c.data().unwrap(), b"3456789abcdef");
        c.consume(4);
        assert_eq!(c.pos(), 7);
        assert_eq!(c.read_at(1, 3).unwrap(), b"123");
        assert_eq!(c.buffered(), b"789abcdef");
        assert_eq!(c.fill_more().unwrap(), 0, "the end of the file");
        c.consume(9);
        assert!(c.data().unwrap().is_empty());
        assert_eq!(c.pos(), 16);

        let mut small = Chunks::open(&path, 0, 16).unwrap();
        small.data().unwrap();
        assert!(small.is_full());
        small.consume(10);
        assert_eq!(small.fill_more().unwrap(), 0, "nothing left in the file");
        assert_eq!(small.buffered(), b"abcdef");
    }
}
