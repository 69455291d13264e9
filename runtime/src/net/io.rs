//! Sockets that give up when the job is cancelled: reads and writes wait in short slices
//! and look at the cancel flag between them, so no network thread outlives its job.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one read or write waits before looking at the cancel flag.
const SLICE: Duration = Duration::from_millis(200);

/// A TCP stream whose blocking calls end with an error once `cancel` is set.
pub(crate) struct CancellableStream {
    stream: TcpStream,
    cancel: Arc<AtomicBool>,
}

impl CancellableStream {
    pub(crate) fn new(stream: TcpStream, cancel: Arc<AtomicBool>) -> io::Result<Self> {
        stream.set_read_timeout(Some(SLICE))?;
        stream.set_write_timeout(Some(SLICE))?;
        stream.set_nodelay(true)?;
        Ok(CancellableStream { stream, cancel })
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(CancellableStream {
            stream: self.stream.try_clone()?,
            cancel: self.cancel.clone(),
        })
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn retry(&self, e: &io::Error) -> io::Result<()> {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "the job was cancelled"));
            }
            return Ok(());
        }
        Err(io::Error::new(e.kind(), e.to_string()))
    }
}

impl Read for CancellableStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.retry(&e)?,
                ok => return ok,
            }
        }
    }
}

impl Write for CancellableStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.stream.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.retry(&e)?,
                ok => return ok,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
