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

use super::accept::CONNECT_DEADLINE;
use super::auth::{self, AttemptSecret, ConnectFailure};
use super::codec::{decode_message, encode_message, read_frame, BatchCodec};
use super::io::CancellableStream;
use super::reject::rejected;
use super::Hello;
use crate::element::Message;
use crate::error::{Result, RuntimeError};

const BUFFER: usize = 256 * 1024;

/// Connects to the worker at `addr` as `hello` and runs the handshake: both sides prove
/// `secret` before anything else crosses. Retries for a while when the connection is
/// refused (the peer listens before anyone connects, but its backlog may be momentarily
/// full) or closed before the challenge (the peer was busy with other handshakes); waits up
/// to [`CONNECT_DEADLINE`] in all for the peer to start accepting.
pub(crate) fn connect(
    addr: SocketAddr,
    hello: &Hello,
    secret: &AttemptSecret,
    cancel: &Arc<AtomicBool>,
) -> Result<CancellableStream> {
    let start = Instant::now();
    let refused_until = start + Duration::from_secs(15);
    let cancelled = || cancel.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let socket = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) if Instant::now() < refused_until && !cancelled() => {
                tracing::debug!(%addr, error = %e, "connecting to a worker; retrying");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(RuntimeError::external(format!("connecting to worker at {addr}"), e)),
        };
        let mut stream = CancellableStream::new(socket, cancel.clone())
            .map_err(|e| RuntimeError::external(format!("configuring the connection to {addr}"), e))?;
        stream.set_deadline(Some(start + CONNECT_DEADLINE));
        match auth::connect(&mut stream, secret, hello) {
            Ok(()) => {
                stream.set_deadline(None);
                return Ok(stream);
            }
            Err(ConnectFailure::NoChallenge) if Instant::now() < start + CONNECT_DEADLINE && !cancelled() => {
                tracing::debug!(%addr, "the worker closed the connection before its challenge; connecting again");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(ConnectFailure::NoChallenge) => {
                return Err(RuntimeError::Internal(format!(
                    "the worker at {addr} closed every connection before its challenge for {CONNECT_DEADLINE:?}"
                )))
            }
            Err(ConnectFailure::Refused(r)) => {
                if cancelled() {
                    return Err(RuntimeError::Cancelled);
                }
                rejected(addr, &r);
                return Err(RuntimeError::Internal(format!(
                    "connecting to the worker at {addr} as {hello:?}: {r}"
                )));
            }
        }
    }
}

/// One outgoing channel: drains `rx` into the connection until the end of the stream.
pub(crate) struct Outbound {
    pub(crate) rx: Receiver<Message>,
    pub(crate) addr: SocketAddr,
    pub(crate) hello: Hello,
    pub(crate) secret: AttemptSecret,
    pub(crate) codec: Arc<dyn BatchCodec>,
    /// The largest frame the receiver accepts.
    pub(crate) max_frame: usize,
}

impl Outbound {
    pub(crate) fn run(self, cancel: Arc<AtomicBool>) -> Result<()> {
        let lost = |e: std::io::Error| {
            RuntimeError::external(format!("sending to the worker at {} ({:?})", self.addr, self.hello), e)
        };
        let stream = connect(self.addr, &self.hello, &self.secret, &cancel)?;
        let mut w = BufWriter::with_capacity(BUFFER, stream);
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
            encode_message(message, &*self.codec, &mut buf, self.max_frame)?;
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
    /// The largest frame accepted.
    pub(crate) max_frame: usize,
}

impl Inbound {
    pub(crate) fn run(self, stream: BufReader<CancellableStream>, cancel: Arc<AtomicBool>) -> Result<()> {
        let mut r = stream;
        let mut body = Vec::with_capacity(BUFFER);
        loop {
            let more = read_frame(&mut r, &mut body, self.max_frame)
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
