//! Running one job over several worker processes: which worker runs which subtasks
//! ([`Placement`]), who may connect (`auth`: a challenge-response over the attempt's
//! secret on every connection, handshakes served off the accept loop by `accept`, refusals
//! counted by `reject`), the data plane between them (`data`: a TCP connection per
//! channel, with the same batches, backpressure and in-band barriers as in-process
//! channels), and the control plane (`control`: worker 0 coordinates checkpoints for all).

pub(crate) mod accept;
pub(crate) mod auth;
pub(crate) mod codec;
#[cfg(test)]
mod codec_fuzz;
pub(crate) mod control;
pub(crate) mod data;
pub(crate) mod io;
pub(crate) mod reject;

use std::io::BufReader;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use auth::AttemptSecret;
pub use codec::{BatchCodec, BincodeCodec, DEFAULT_MAX_FRAME};

use crate::error::{Result, RuntimeError};
use io::CancellableStream;

/// Where the subtasks of a job run when it is spread over workers: the same on every
/// worker, except for `worker` and the listener.
#[derive(Debug)]
pub struct Placement {
    /// The attempt of the job this run belongs to.
    pub attempt: u64,
    /// This worker's index; worker 0 coordinates checkpoints.
    pub worker: usize,
    /// For each subtask index, the worker that runs it (subtask `i` of every operator).
    pub subtask_worker: Vec<usize>,
    /// Every worker's address, by index.
    pub peers: Vec<SocketAddr>,
    /// The secret every connection between the attempt's workers proves.
    pub(crate) secret: AttemptSecret,
    /// Where this worker accepts connections (bound before the addresses were exchanged);
    /// taken by the job, which closes it once every peer it expects has connected.
    listener: Mutex<Option<TcpListener>>,
}

impl Placement {
    /// The placement of worker `worker` of `attempt`, listening on `listener`, whose
    /// connections to and from `peers` prove `secret`.
    pub fn new(
        attempt: u64,
        worker: usize,
        subtask_worker: Vec<usize>,
        listener: TcpListener,
        peers: Vec<SocketAddr>,
        secret: AttemptSecret,
    ) -> Self {
        Placement {
            attempt,
            worker,
            subtask_worker,
            peers,
            secret,
            listener: Mutex::new(Some(listener)),
        }
    }

    /// The listener, once: a placement runs one job.
    pub(crate) fn take_listener(&self) -> Result<TcpListener> {
        self.listener
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .ok_or_else(|| RuntimeError::InvalidGraph("this placement already ran a job: a worker runs one".into()))
    }

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

/// What a connection is for: the first message on every connection between workers,
/// authenticated by the handshake (`auth`).
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

/// Connects a worker other than worker 0 to it, and reads which checkpoint to restore.
pub(crate) fn join_leader(
    p: &Placement,
    cancel: &Arc<AtomicBool>,
) -> Result<(
    BufReader<CancellableStream>,
    Option<floe_checkpoints::RestoredCheckpoint>,
)> {
    let leader = *p
        .peers
        .first()
        .ok_or_else(|| RuntimeError::InvalidGraph("a placement without workers".into()))?;
    let lost = |e: std::io::Error| RuntimeError::external(format!("joining worker 0 at {leader}"), e);
    let hello = Hello::Control {
        attempt: p.attempt,
        worker: p.worker,
    };
    let stream = data::connect(leader, &hello, &p.secret, cancel)?;
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    let restore =
        match codec::read_value::<control::ToWorker>(&mut reader, &mut buf, codec::CONTROL_MAX).map_err(lost)? {
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
