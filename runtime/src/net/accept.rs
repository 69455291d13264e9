//! Accepting the connections a worker expects: one per incoming channel, and on worker 0
//! one control connection per other worker. The accept loop only accepts; each handshake
//! runs on a thread of its own with a deadline, so a silent peer, or hundreds, hold up no
//! one. Authenticated connections come back to the loop, which alone decides what each is
//! for (refusing channels it does not expect and channels already connected), and which
//! closes the listener as soon as every expected peer is connected: later connections are
//! refused by the operating system.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::auth::{self, AttemptSecret};
use super::control::{fail, NetError};
use super::data::Inbound;
use super::io::CancellableStream;
use super::reject::{rejected, Reason, Refusal};
use super::Hello;
use crate::error::{Result, RuntimeError};

/// What worker 0 does with another worker's control connection.
pub(crate) type ControlHandler = Box<dyn FnOnce(CancellableStream) + Send>;

/// How long workers have to connect to each other.
pub(crate) const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// How long a peer has, once accepted, to prove it knows the attempt's secret.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; connections beyond are closed at once (a real peer
/// whose connection is closed before the challenge connects again).
const MAX_PENDING: usize = 256;
/// Stack of a handshake thread: it reads a few hundred bytes and computes two MACs.
const HANDSHAKE_STACK: usize = 256 * 1024;

/// The connections this worker expects, and how to serve each.
pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) secret: AttemptSecret,
    pub(crate) attempt: u64,
    /// Incoming channels by (edge, upstream subtask, downstream subtask).
    pub(crate) data: HashMap<(usize, usize, usize), Inbound>,
    /// Control connections of the other workers, by worker (on worker 0).
    pub(crate) controls: HashMap<usize, ControlHandler>,
}

/// A connection whose peer proved the secret, and what it says it is for.
struct Authenticated {
    hello: Hello,
    stream: CancellableStream,
    peer: SocketAddr,
}

/// Counts a handshake in progress for as long as it lives.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Acceptor {
    /// Runs until every expected connection was served to its end; errors go to `error`.
    pub(crate) fn run(self, cancel: Arc<AtomicBool>, error: NetError) -> Result<()> {
        let mut served = Vec::new();
        let mut handshakes = Vec::new();
        let r = self.accept_all(&cancel, &error, &mut served, &mut handshakes);
        // The listener is closed now; what is left are handshakes of strangers (each ends by
        // its deadline) and the channels being served.
        for h in handshakes.into_iter().chain(served) {
            let _ = h.join();
        }
        r.map_err(|e| {
            fail(&error, &cancel, e);
            RuntimeError::Cancelled
        })
    }

    fn accept_all(
        mut self,
        cancel: &Arc<AtomicBool>,
        error: &NetError,
        served: &mut Vec<JoinHandle<()>>,
        handshakes: &mut Vec<JoinHandle<()>>,
    ) -> Result<()> {
        self.listener
            .set_nonblocking(true)
            .map_err(|e| RuntimeError::external("configuring the worker's listener", e))?;
        let deadline = Instant::now() + CONNECT_DEADLINE;
        let pending = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = unbounded();
        let mut connected = Connected::default();
        while !(self.data.is_empty() && self.controls.is_empty()) {
            for a in done_rx.try_iter() {
                if let Some(h) = self.dispatch(a, &mut connected, cancel, error)? {
                    served.push(h);
                }
            }
            if self.data.is_empty() && self.controls.is_empty() {
                break;
            }
            match self.listener.accept() {
                Ok((socket, peer)) => {
                    handshakes.retain(|h| !h.is_finished());
                    if let Some(h) = self.start_handshake(socket, peer, &pending, &done_tx, cancel)? {
                        handshakes.push(h);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if cancel.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(RuntimeError::Internal(format!(
                            "{} channels and {} workers did not connect within {CONNECT_DEADLINE:?}",
                            self.data.len(),
                            self.controls.len()
                        )));
                    }
                    wait_briefly(&done_rx);
                }
                Err(e) => return Err(RuntimeError::external("accepting a worker connection", e)),
            }
        }
        tracing::debug!("every peer connected: no longer listening");
        Ok(())
    }

    /// Hands `socket` to a handshake thread, or closes it if too many are in progress.
    fn start_handshake(
        &self,
        socket: TcpStream,
        peer: SocketAddr,
        pending: &Arc<AtomicUsize>,
        done: &Sender<Authenticated>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Option<JoinHandle<()>>> {
        if pending.load(Ordering::SeqCst) >= MAX_PENDING {
            rejected(
                peer,
                &Refusal::new(Reason::Busy, format!("{MAX_PENDING} handshakes already in progress")),
            );
            return Ok(None);
        }
        pending.fetch_add(1, Ordering::SeqCst);
        let guard = Pending(pending.clone());
        let (secret, done, cancel) = (self.secret.clone(), done.clone(), cancel.clone());
        let h = std::thread::Builder::new()
            .name("net-handshake".into())
            .stack_size(HANDSHAKE_STACK)
            .spawn(move || {
                let _guard = guard;
                match handshake(socket, &secret, cancel) {
                    Ok((hello, stream)) => {
                        if done.send(Authenticated { hello, stream, peer }).is_err() {
                            let late =
                                Refusal::new(Reason::Unexpected, "authenticated after every expected peer connected");
                            rejected(peer, &late);
                        }
                    }
                    Err(refusal) => rejected(peer, &refusal),
                }
            })
            .map_err(|e| RuntimeError::external("spawning a handshake thread", e))?;
        Ok(Some(h))
    }

    /// Serves an authenticated connection if this worker expects it, else closes it.
    fn dispatch(
        &mut self,
        a: Authenticated,
        connected: &mut Connected,
        cancel: &Arc<AtomicBool>,
        error: &NetError,
    ) -> Result<Option<JoinHandle<()>>> {
        let Authenticated { hello, stream, peer } = a;
        let refuse = |reason, what: String| {
            rejected(peer, &Refusal::new(reason, what));
            Ok(None)
        };
        match hello {
            Hello::Data { attempt, .. } | Hello::Control { attempt, .. } if attempt != self.attempt => refuse(
                Reason::Unexpected,
                format!("a hello for attempt {attempt}, this is {}", self.attempt),
            ),
            Hello::Data { edge, from, to, .. } => {
                let Some(inbound) = self.data.remove(&(edge, from, to)) else {
                    return if connected.data.contains(&(edge, from, to)) {
                        refuse(
                            Reason::Duplicate,
                            format!("channel {edge}/{from}->{to} is connected already"),
                        )
                    } else {
                        refuse(
                            Reason::Unexpected,
                            format!("channel {edge}/{from}->{to} does not end at this worker"),
                        )
                    };
                };
                connected.data.insert((edge, from, to));
                let (c, e) = (cancel.clone(), error.clone());
                let reader = BufReader::with_capacity(256 * 1024, stream);
                std::thread::Builder::new()
                    .name(format!("net-in-{edge}-{from}-{to}"))
                    .spawn(move || {
                        if let Err(err) = inbound.run(reader, c.clone()) {
                            fail(&e, &c, err);
                        }
                    })
                    .map(Some)
                    .map_err(|e| RuntimeError::external("spawning a network thread", e))
            }
            Hello::Control { worker, .. } => {
                let Some(serve) = self.controls.remove(&worker) else {
                    return if connected.workers.contains(&worker) {
                        refuse(Reason::Duplicate, format!("worker {worker} is connected already"))
                    } else {
                        refuse(
                            Reason::Unexpected,
                            format!("a control connection as worker {worker}, which this worker does not coordinate"),
                        )
                    };
                };
                connected.workers.insert(worker);
                serve(stream);
                Ok(None)
            }
        }
    }
}

/// Channels and workers connected so far, to tell a duplicate from a stranger.
#[derive(Default)]
struct Connected {
    data: HashSet<(usize, usize, usize)>,
    workers: HashSet<usize>,
}

/// The acceptor's side of the handshake on a fresh connection, within its deadline.
fn handshake(
    socket: TcpStream,
    secret: &AttemptSecret,
    cancel: Arc<AtomicBool>,
) -> std::result::Result<(Hello, CancellableStream), Refusal> {
    let mut stream = socket
        .set_nonblocking(false)
        .and_then(|()| CancellableStream::new(socket, cancel))
        .map_err(|e| Refusal::io("configuring the connection", &e))?;
    stream.set_deadline(Some(Instant::now() + HANDSHAKE_DEADLINE));
    let hello = auth::accept(&mut stream, secret)?;
    stream.set_deadline(None);
    Ok((hello, stream))
}

/// Waits a moment for a handshake to finish or a connection to arrive.
fn wait_briefly(done: &Receiver<Authenticated>) {
    // The loop looks at the listener again after this; an authenticated connection that
    // arrives meanwhile is dispatched on the next turn.
    if done.is_empty() {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Message;
    use crate::net::codec::{encode_message, BincodeCodec, DEFAULT_MAX_FRAME};
    use crate::net::data::connect;
    use std::io::{Read, Write};

    const CHANNEL: (usize, usize, usize) = (0, 0, 1);

    fn secret() -> AttemptSecret {
        AttemptSecret::from_bytes([3; 32])
    }

    fn data_hello((edge, from, to): (usize, usize, usize)) -> Hello {
        Hello::Data {
            attempt: 9,
            edge,
            from,
            to,
        }
    }

    /// An acceptor expecting `CHANNEL` (its messages go to the receiver) and, if `control`,
    /// worker 1's control connection (its stream goes to the second receiver).
    fn start(
        control: bool,
    ) -> (
        SocketAddr,
        crossbeam_channel::Receiver<Message>,
        crossbeam_channel::Receiver<CancellableStream>,
        JoinHandle<Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(16);
        let (ctl_tx, ctl_rx) = unbounded();
        let inbound = Inbound {
            tx,
            codec: Arc::new(BincodeCodec::<u64>::new()),
            from: "test".into(),
            max_frame: DEFAULT_MAX_FRAME,
        };
        let mut controls: HashMap<usize, ControlHandler> = HashMap::new();
        if control {
            controls.insert(
                1,
                Box::new(move |s| {
                    let _ = ctl_tx.send(s);
                }),
            );
        }
        let acceptor = Acceptor {
            listener,
            secret: secret(),
            attempt: 9,
            data: [(CHANNEL, inbound)].into_iter().collect(),
            controls,
        };
        let h = std::thread::spawn(move || acceptor.run(Arc::new(AtomicBool::new(false)), NetError::default()));
        (addr, rx, ctl_rx, h)
    }

    fn send_end(stream: &mut CancellableStream) {
        let mut buf = Vec::new();
        encode_message(
            Message::EndOfStream,
            &BincodeCodec::<u64>::new(),
            &mut buf,
            DEFAULT_MAX_FRAME,
        )
        .unwrap();
        stream.write_all(&buf).unwrap();
    }

    fn count(reason: &str) -> u64 {
        crate::metrics::net::rejected_connections(reason)
    }

    /// Polls `ok` until it holds, failing after five seconds.
    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_real_peer_gets_through_silent_strangers_and_then_the_port_closes() {
        let (addr, rx, _, acceptor) = start(false);
        // Fifty connections that never answer, made first.
        let idle: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let started = Instant::now();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut stream = connect(addr, &data_hello(CHANNEL), &secret(), &cancel).unwrap();
        assert!(
            started.elapsed() < HANDSHAKE_DEADLINE / 5,
            "the handshake waited for strangers: {:?}",
            started.elapsed()
        );
        send_end(&mut stream);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::EndOfStream)
        ));
        // Every expected peer is connected: the listener is closed.
        wait_until(
            "the listener to close",
            || matches!(TcpStream::connect(addr), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        );
        let closed = count("closed");
        drop(idle);
        acceptor.join().unwrap().unwrap();
        assert!(
            count("closed") >= closed + 50,
            "the strangers' handshakes ended, counted"
        );
    }

    #[test]
    fn authenticated_connections_for_channels_not_expected_or_taken_are_refused() {
        let (addr, rx, controls, acceptor) = start(true);
        let cancel = Arc::new(AtomicBool::new(false));
        let mut real = connect(addr, &data_hello(CHANNEL), &secret(), &cancel).unwrap();
        let (duplicate, unexpected) = (count("duplicate"), count("unexpected"));
        let refused = |hello: Hello| {
            // The handshake succeeds (the peer knows the secret), then the worker closes.
            let mut s = connect(addr, &hello, &secret(), &cancel).unwrap();
            let mut byte = [0u8; 1];
            assert!(
                matches!(s.read(&mut byte), Ok(0) | Err(_)),
                "closed after the handshake"
            );
        };
        refused(data_hello(CHANNEL));
        wait_until("the duplicate to be counted", || count("duplicate") == duplicate + 1);
        refused(data_hello((7, 0, 1)));
        refused(Hello::Control { attempt: 9, worker: 0 });
        refused(Hello::Control { attempt: 8, worker: 1 });
        wait_until("the unexpected ones to be counted", || {
            count("unexpected") == unexpected + 3
        });
        // The control connection still gets through, and the job's channel works.
        let _ctl = connect(addr, &Hello::Control { attempt: 9, worker: 1 }, &secret(), &cancel).unwrap();
        assert!(controls.recv_timeout(Duration::from_secs(5)).is_ok());
        send_end(&mut real);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::EndOfStream)
        ));
        acceptor.join().unwrap().unwrap();
    }

    #[test]
    fn handshakes_beyond_the_cap_are_closed_at_once_and_the_peer_connects_again() {
        let (addr, rx, _, acceptor) = start(false);
        let busy = count("busy");
        let idle: Vec<TcpStream> = (0..MAX_PENDING + 5)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        wait_until("the connections beyond the cap to be refused", || {
            count("busy") >= busy + 5
        });
        // The real peer is turned away while the cap is reached, and connects again once
        // the strangers are gone.
        let cancel = Arc::new(AtomicBool::new(false));
        let peer = std::thread::spawn(move || connect(addr, &data_hello(CHANNEL), &secret(), &cancel));
        wait_until("the real peer to be turned away", || count("busy") >= busy + 6);
        drop(idle);
        let mut stream = peer.join().unwrap().unwrap();
        send_end(&mut stream);
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(Message::EndOfStream)
        ));
        acceptor.join().unwrap().unwrap();
    }
}
