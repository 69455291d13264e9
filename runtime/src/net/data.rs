//! The data plane: one TCP connection per channel between subtasks on different workers.
//! The sending side drains the channel the edge writer fills (so batching is the same as
//! in-process) and writes frames; the receiving side decodes them into the bounded channel
//! the task reads. A full channel stops the reader, TCP's window fills, and the writer
//! blocks: backpressure crosses workers like it crosses threads. Barriers, watermarks and
//! the end of the stream travel in band, in order.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::codec::{decode_message, encode_message, read_frame, write_value, BatchCodec};
use super::io::CancellableStream;
use super::Hello;
use crate::element::Message;
use crate::error::{Result, RuntimeError};

const BUFFER: usize = 256 * 1024;

/// Connects to `addr`, retrying for a while: the peer listens before anyone connects, but
/// its accept backlog may be momentarily full.
pub(crate) fn connect(addr: SocketAddr, cancel: &Arc<AtomicBool>) -> Result<CancellableStream> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                return CancellableStream::new(s, cancel.clone())
                    .map_err(|e| RuntimeError::external(format!("configuring the connection to {addr}"), e))
            }
            Err(e) if Instant::now() < deadline && !cancel.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::debug!(%addr, error = %e, "connecting to a worker; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(RuntimeError::external(format!("connecting to worker at {addr}"), e)),
        }
    }
}

/// One outgoing channel: drains `rx` into the connection until the end of the stream.
pub(crate) struct Outbound {
    pub(crate) rx: Receiver<Message>,
    pub(crate) addr: SocketAddr,
    pub(crate) hello: Hello,
    pub(crate) codec: Arc<dyn BatchCodec>,
}

impl Outbound {
    pub(crate) fn run(self, cancel: Arc<AtomicBool>) -> Result<()> {
        let lost = |e: std::io::Error| {
            RuntimeError::external(format!("sending to the worker at {} ({:?})", self.addr, self.hello), e)
        };
        let stream = connect(self.addr, &cancel)?;
        let mut w = BufWriter::with_capacity(BUFFER, stream);
        write_value(&mut w, &self.hello).map_err(lost)?;
        let mut buf = Vec::with_capacity(BUFFER);
        loop {
            let message = match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(RuntimeError::Cancelled);
                    }
                    continue;
                }
                // The upstream task is gone without ending its stream: it failed, and the
                // job with it.
                Err(RecvTimeoutError::Disconnected) => return Err(RuntimeError::Cancelled),
            };
            let end = matches!(message, Message::EndOfStream);
            encode_message(message, &*self.codec, &mut buf)?;
            w.write_all(&buf).map_err(lost)?;
            // Send what is written as soon as nothing more is waiting: batches already
            // group records, this only groups the control elements behind them.
            if end || self.rx.is_empty() {
                w.flush().map_err(lost)?;
            }
            if end {
                w.get_ref().shutdown_write();
                return Ok(());
            }
        }
    }
}

/// One incoming channel: decodes frames into `tx` until the end of the stream.
pub(crate) struct Inbound {
    pub(crate) tx: Sender<Message>,
    pub(crate) codec: Arc<dyn BatchCodec>,
    pub(crate) from: String,
}

impl Inbound {
    pub(crate) fn run(self, stream: BufReader<CancellableStream>, cancel: Arc<AtomicBool>) -> Result<()> {
        let mut r = stream;
        let mut body = Vec::with_capacity(BUFFER);
        loop {
            let more = read_frame(&mut r, &mut body)
                .map_err(|e| RuntimeError::external(format!("receiving from {}", self.from), e))?;
            if !more {
                return Err(RuntimeError::Internal(format!(
                    "{} closed the connection before the end of its stream (its worker failed or was killed)",
                    self.from
                )));
            }
            let mut message = decode_message(&body, &*self.codec)?;
            let end = matches!(message, Message::EndOfStream);
            loop {
                match self.tx.send_timeout(message, Duration::from_millis(200)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(m)) => {
                        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                            return Err(RuntimeError::Cancelled);
                        }
                        message = m;
                    }
                    // The task is gone: it ended (or failed, which cancels the job).
                    Err(SendTimeoutError::Disconnected(_)) => return Ok(()),
                }
            }
            if end {
                return Ok(());
            }
        }
    }
}
