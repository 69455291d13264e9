//! Sockets that give up when the job is cancelled: reads and writes wait in short slices
//! and look at the cancel flag between them, so no network thread outlives its job. During
//! a handshake they also give up at a deadline, however the peer trickles its bytes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one read or write waits before looking at the cancel flag.
const SLICE: Duration = Duration::from_millis(200);

/// A TCP stream whose blocking calls end with an error once `cancel` is set.
pub(crate) struct CancellableStream {
    stream: TcpStream,
    cancel: Arc<AtomicBool>,
    /// When set, reads and writes fail with `TimedOut` from then on.
    deadline: Option<Instant>,
}

impl CancellableStream {
    pub(crate) fn new(stream: TcpStream, cancel: Arc<AtomicBool>) -> io::Result<Self> {
        stream.set_read_timeout(Some(SLICE))?;
        stream.set_write_timeout(Some(SLICE))?;
        stream.set_nodelay(true)?;
        Ok(CancellableStream {
            stream,
            cancel,
            deadline: None,
        })
    }

    /// Reads and writes fail with `TimedOut` once `deadline` passed (`None`: never).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(CancellableStream {
            stream: self.stream.try_clone()?,
            cancel: self.cancel.clone(),
            deadline: self.deadline,
        })
    }

    fn check_deadline(&self) -> io::Result<()> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not finish within its deadline",
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn retry(&self, e: &io::Error) -> io::Result<()> {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            self.check_deadline()?;
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
        self.check_deadline()?;
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
        self.check_deadline()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_peer_trickling_bytes_meets_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        // One byte every 100 ms, never the 100 that are read.
        let trickle = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            while !d2.load(Ordering::Relaxed) && s.write_all(&[1]).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (socket, _) = listener.accept().unwrap();
        let mut s = CancellableStream::new(socket, Arc::new(AtomicBool::new(false))).unwrap();
        let start = Instant::now();
        s.set_deadline(Some(start + Duration::from_millis(700)));
        let e = s.read_exact(&mut [0u8; 100]).unwrap_err();
        let took = start.elapsed();
        done.store(true, Ordering::Relaxed);
        trickle.join().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_millis(700) + 2 * SLICE,
            "{took:?}"
        );
    }
}
