//! Running one job over several worker processes: which worker runs which subtasks
//! ([`Placement`]), the data plane between them (`data`: a TCP connection per channel,
//! with the same batches, backpressure and in-band barriers as in-process channels), and
//! the control plane (`control`: worker 0 coordinates checkpoints for all).

pub(crate) mod codec;
#[cfg(test)]
mod codec_fuzz;
pub(crate) mod control;
pub(crate) mod data;
pub(crate) mod io;

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use codec::{BatchCodec, BincodeCodec};

use crate::error::{Result, RuntimeError};
use control::{fail, NetError};
use data::Inbound;
use io::CancellableStream;

/// Where the subtasks of a job run when it is spread over workers: the same on every
/// worker, except for `worker` and `listener`.
#[derive(Debug)]
pub struct Placement {
    /// The attempt of the job this run belongs to (connections of other attempts are
    /// refused).
    pub attempt: u64,
    /// This worker's index; worker 0 coordinates checkpoints.
    pub worker: usize,
    /// For each subtask index, the worker that runs it (subtask `i` of every operator).
    pub subtask_worker: Vec<usize>,
    /// Where this worker accepts connections (bound before the addresses were exchanged).
    pub listener: TcpListener,
    /// Every worker's address, by index.
    pub peers: Vec<SocketAddr>,
}

impl Placement {
    /// The worker that runs subtask `subtask`.
    pub fn worker_of(&self, subtask: usize) -> usize {
        self.subtask_worker.get(subtask).copied().unwrap_or(0)
    }

    /// Whether this worker runs subtask `subtask`.
    pub fn is_local(&self, subtask: usize) -> bool {
        self.worker_of(subtask) == self.worker
    }

    /// Whether this worker coordinates checkpoints.
    pub fn is_leader(&self) -> bool {
        self.worker == 0
    }

    /// Checks that the placement can run a job of `parallelism`.
    pub fn validate(&self, parallelism: usize) -> Result<()> {
        let workers = self.peers.len();
        if self.worker >= workers {
            return Err(RuntimeError::InvalidGraph(format!(
                "worker {} of {workers}: the worker index must be below the number of workers",
                self.worker
            )));
        }
        if self.subtask_worker.len() < parallelism {
            return Err(RuntimeError::InvalidGraph(format!(
                "the placement covers {} subtasks but the job has parallelism {parallelism}",
                self.subtask_worker.len()
            )));
        }
        if let Some(w) = self.subtask_worker.iter().find(|w| **w >= workers) {
            return Err(RuntimeError::InvalidGraph(format!(
                "the placement names worker {w} but there are {workers}"
            )));
        }
        Ok(())
    }
}

/// The first message on every connection between workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Hello {
    /// The channel of edge `edge` from upstream subtask `from` to downstream subtask `to`.
    Data {
        attempt: u64,
        edge: usize,
        from: usize,
        to: usize,
    },
    /// Worker `worker`'s control connection to worker 0.
    Control { attempt: u64, worker: usize },
}

/// What worker 0 does with another worker's control connection.
pub(crate) type ControlHandler = Box<dyn FnOnce(CancellableStream) + Send>;

/// Accepts the connections this worker expects (one per incoming channel, and on worker 0
/// one control connection per other worker) and serves each.
pub(crate) struct Acceptor {
    pub(crate) listener: TcpListener,
    pub(crate) attempt: u64,
    pub(crate) data: HashMap<(usize, usize, usize), Inbound>,
    pub(crate) controls: HashMap<usize, ControlHandler>,
}

/// How long workers have to connect to each other.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

impl Acceptor {
    /// Runs until every expected connection was served to its end; errors go to `error`.
    pub(crate) fn run(mut self, cancel: Arc<AtomicBool>, error: NetError) -> Result<()> {
        let r = self.accept_all(&cancel, &error);
        match r {
            Ok(handles) => {
                for h in handles {
                    let _ = h.join();
                }
                Ok(())
            }
            Err(e) => {
                fail(&error, &cancel, e);
                Err(RuntimeError::Cancelled)
            }
        }
    }

    fn accept_all(&mut self, cancel: &Arc<AtomicBool>, error: &NetError) -> Result<Vec<std::thread::JoinHandle<()>>> {
        let mut handles = Vec::new();
        self.listener
            .set_nonblocking(true)
            .map_err(|e| RuntimeError::external("configuring the worker's listener", e))?;
        let deadline = Instant::now() + CONNECT_DEADLINE;
        let mut buf = Vec::new();
        while !(self.data.is_empty() && self.controls.is_empty()) {
            let (socket, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if cancel.load(Ordering::Relaxed) {
                        return Ok(handles);
                    }
                    if Instant::now() > deadline {
                        return Err(RuntimeError::Internal(format!(
                            "{} channels and {} workers did not connect within {CONNECT_DEADLINE:?}",
                            self.data.len(),
                            self.controls.len()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) => return Err(RuntimeError::external("accepting a worker connection", e)),
            };
            let stream = socket
                .set_nonblocking(false)
                .and_then(|()| CancellableStream::new(socket, cancel.clone()))
                .map_err(|e| RuntimeError::external("configuring a worker connection", e))?;
            let mut reader = BufReader::with_capacity(256 * 1024, stream);
            let hello = match codec::read_value::<Hello>(&mut reader, &mut buf) {
                Ok(Some(h)) => h,
                Ok(None) | Err(_) => {
                    tracing::warn!(%peer, "a connection that is not a worker's: closed");
                    continue;
                }
            };
            match hello {
                Hello::Data {
                    attempt,
                    edge,
                    from,
                    to,
                } if attempt == self.attempt => {
                    let Some(inbound) = self.data.remove(&(edge, from, to)) else {
                        tracing::warn!(%peer, edge, from, to, "unexpected channel: closed");
                        continue;
                    };
                    let (c, e) = (cancel.clone(), error.clone());
                    let h = std::thread::Builder::new()
                        .name(format!("net-in-{edge}-{from}-{to}"))
                        .spawn(move || {
                            if let Err(err) = inbound.run(reader, c.clone()) {
                                fail(&e, &c, err);
                            }
                        })
                        .map_err(|e| RuntimeError::external("spawning a network thread", e))?;
                    handles.push(h);
                }
                Hello::Control { attempt, worker } if attempt == self.attempt => {
                    let Some(serve) = self.controls.remove(&worker) else {
                        tracing::warn!(%peer, worker, "unexpected control connection: closed");
                        continue;
                    };
                    serve(reader.into_inner());
                }
                other => {
                    tracing::warn!(%peer, ?other, attempt = self.attempt, "a connection of another attempt: closed")
                }
            }
        }
        Ok(handles)
    }
}

/// Connects a worker other than worker 0 to it, and reads which checkpoint to restore.
pub(crate) fn join_leader(
    p: &Placement,
    cancel: &Arc<AtomicBool>,
) -> Result<(
    BufReader<CancellableStream>,
    Option<floe_checkpoints::RestoredCheckpoint>,
)> {
    let leader = p.peers[0];
    let lost = |e: std::io::Error| RuntimeError::external(format!("joining worker 0 at {leader}"), e);
    let mut stream = data::connect(leader, cancel)?;
    codec::write_value(
        &mut stream,
        &Hello::Control {
            attempt: p.attempt,
            worker: p.worker,
        },
    )
    .map_err(lost)?;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let restore = match codec::read_value::<control::ToWorker>(&mut reader, &mut buf).map_err(lost)? {
        Some(control::ToWorker::Restore(r)) => r,
        other => {
            return Err(RuntimeError::Internal(format!(
                "worker 0 sent {other:?} where the restore point was expected"
            )))
        }
    };
    let restored = match restore {
        Some(r) => {
            tracing::info!(checkpoint = r.checkpoint, location = %r.location, "restoring as worker 0 says");
            Some(floe_checkpoints::CheckpointStorage::new(&r.location, usize::MAX)?.load(r.checkpoint)?)
        }
        None => None,
    };
    Ok((reader, restored))
}
