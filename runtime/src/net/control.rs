//! The control plane of a job spread over workers: worker 0 runs the checkpoint
//! coordinator; every other worker keeps one connection to it, over which the coordinator's
//! control messages reach that worker's tasks, and the tasks' reports come back. A worker
//! writes its tasks' checkpoint state to the shared checkpoint storage itself and reports
//! only the files.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use floe_checkpoints::{CheckpointStorage, StateFile};
use serde::{Deserialize, Serialize};

use super::codec::{read_value, write_value, CONTROL_MAX};
use super::io::CancellableStream;
use crate::error::{Result, RuntimeError};
use crate::task::{Control, Report};

/// Where the control messages of one task go: its own channel, or the connection to the
/// worker that runs it.
#[derive(Clone)]
pub(crate) enum TaskControl {
    Local(Sender<Control>),
    Remote { task: usize, to: Sender<(usize, Control)> },
}

impl TaskControl {
    /// Sends `control`; false if the task (or its worker's connection) is gone.
    pub(crate) fn send(&self, control: Control) -> bool {
        match self {
            TaskControl::Local(tx) => tx.send(control).is_ok(),
            TaskControl::Remote { task, to } => to.send((*task, control)).is_ok(),
        }
    }
}

/// Which checkpoint every worker restores: worker 0 decides, the others follow, so all
/// subtasks start from the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RestoreFrom {
    pub(crate) location: String,
    pub(crate) checkpoint: u64,
}

/// From worker 0 to another worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// First message: the checkpoint to restore, if any.
    Restore(Option<RestoreFrom>),
    Control {
        task: usize,
        control: Control,
    },
}

/// From another worker to worker 0.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToLeader {
    Ack {
        id: u64,
        task: usize,
        files: Vec<StateFile>,
    },
    SourceEnded {
        task: usize,
    },
    Finished {
        task: usize,
    },
}

/// The first error of the network threads, which the job reports when its tasks only saw
/// the cancellation it caused.
pub(crate) type NetError = Arc<Mutex<Option<RuntimeError>>>;

/// What every network thread of a job shares: the cancel flag it sets on failure, and the
/// slot for the first failure's reason.
#[derive(Clone)]
pub(crate) struct NetShared {
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) error: NetError,
}

pub(crate) fn fail(slot: &NetError, cancel: &AtomicBool, e: RuntimeError) {
    if !e.is_cancellation() {
        if let Ok(mut s) = slot.lock() {
            s.get_or_insert(e);
        }
    }
    cancel.store(true, Ordering::SeqCst);
}

/// What another worker may report about: its own tasks, and state of its own subtasks.
#[derive(Clone, Debug)]
pub(crate) struct PeerTasks {
    /// The worker.
    pub(crate) worker: usize,
    /// Ids of the tasks it runs.
    pub(crate) tasks: HashSet<usize>,
    /// Operators in the job graph.
    pub(crate) nodes: usize,
    /// For each subtask index, the worker that runs it.
    pub(crate) subtask_worker: Vec<usize>,
}

impl PeerTasks {
    /// Checks every field of `m` before the coordinator sees it; `Err` says what is wrong.
    fn check(&self, m: &ToLeader, finished: &HashSet<usize>) -> std::result::Result<(), String> {
        let (ToLeader::Ack { task, .. } | ToLeader::SourceEnded { task } | ToLeader::Finished { task }) = m;
        if !self.tasks.contains(task) {
            return Err(format!("a report for task {task}, which it does not run"));
        }
        match m {
            ToLeader::Finished { task } if finished.contains(task) => Err(format!("task {task} finished twice")),
            ToLeader::Ack { files, .. } => files.iter().try_for_each(|f| {
                if f.node >= self.nodes {
                    return Err(format!("state of operator {}, of {}", f.node, self.nodes));
                }
                if self.subtask_worker.get(f.subtask) != Some(&self.worker) {
                    return Err(format!("state of subtask {}, which it does not run", f.subtask));
                }
                match std::iter::once(&f.file)
                    .chain(f.shared.iter().map(|s| &s.name))
                    .find(|n| !plain_file_name(n))
                {
                    Some(n) => Err(format!("a state file named {n:?}, not a plain file name")),
                    None => Ok(()),
                }
            }),
            _ => Ok(()),
        }
    }
}

/// Whether `name` names a file in a directory, not a path elsewhere.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Worker 0's side of the connection to worker `peer.worker`: sends it the restore point
/// and its tasks' control messages, and turns its reports into the coordinator's, once
/// checked against what that worker runs.
pub(crate) fn serve_worker(
    peer: PeerTasks,
    stream: CancellableStream,
    restore: Option<RestoreFrom>,
    controls: Receiver<(usize, Control)>,
    reports: Sender<Report>,
    net: NetShared,
) {
    let NetShared { cancel, error } = net;
    let (worker, tasks) = (peer.worker, peer.tasks.len());
    let Ok(write_half) = stream.try_clone() else {
        fail(
            &error,
            &cancel,
            RuntimeError::Internal(format!("cloning the connection to worker {worker}")),
        );
        return;
    };
    let (c2, e2) = (cancel.clone(), error.clone());
    let _ = std::thread::Builder::new()
        .name(format!("ctl-out-{worker}"))
        .spawn(move || {
            let mut w = BufWriter::new(write_half);
            let lost = |e: std::io::Error| RuntimeError::external(format!("controlling worker {worker}"), e);
            let r = (|| -> Result<()> {
                write_value(&mut w, &ToWorker::Restore(restore)).map_err(lost)?;
                w.flush().map_err(lost)?;
                loop {
                    match controls.recv_timeout(Duration::from_millis(200)) {
                        Ok((task, control)) => {
                            let m = ToWorker::Control { task, control };
                            write_value(&mut w, &m).map_err(lost)?;
                            if controls.is_empty() {
                                w.flush().map_err(lost)?;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) if c2.load(Ordering::Relaxed) => return Ok(()),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            })();
            if let Err(e) = r {
                fail(&e2, &c2, e);
            }
        });
    let _ = std::thread::Builder::new()
        .name(format!("ctl-in-{worker}"))
        .spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            let mut finished = HashSet::new();
            loop {
                match read_value::<ToLeader>(&mut r, &mut buf, CONTROL_MAX) {
                    Ok(Some(m)) => {
                        if let Err(what) = peer.check(&m, &finished) {
                            return fail(
                                &error,
                                &cancel,
                                RuntimeError::Internal(format!("worker {worker} sent {what}: the attempt fails")),
                            );
                        }
                        let report = match m {
                            ToLeader::Ack { id, task, files } => Report::AckWritten { id, task, files },
                            ToLeader::SourceEnded { task } => Report::SourceEnded { task },
                            ToLeader::Finished { task } => {
                                finished.insert(task);
                                Report::Finished { task }
                            }
                        };
                        let _ = reports.send(report);
                    }
                    Ok(None) if finished.len() >= tasks => return,
                    Ok(None) => {
                        return fail(
                            &error,
                            &cancel,
                            RuntimeError::Internal(format!(
                                "worker {worker} closed its connection with {} of its {tasks} tasks running (it failed or was killed)",
                                tasks - finished.len()
                            )),
                        )
                    }
                    Err(e) => {
                        return fail(
                            &error,
                            &cancel,
                            RuntimeError::external(format!("reading reports of worker {worker}"), e),
                        )
                    }
                }
            }
        });
}

/// Another worker's side: delivers control messages to its tasks (after the restore
/// point, read by the caller), and sends their reports, writing checkpoint state first.
pub(crate) fn follow_leader(
    stream: BufReader<CancellableStream>,
    controls: HashMap<usize, Sender<Control>>,
    reports: Receiver<Report>,
    storage: Option<CheckpointStorage>,
    stopped: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    net: NetShared,
) -> Result<()> {
    let NetShared { cancel, error } = net;
    let write_half = stream
        .get_ref()
        .try_clone()
        .map_err(|e| RuntimeError::external("cloning the connection to worker 0", e))?;
    let (c2, e2) = (cancel.clone(), error.clone());
    std::thread::Builder::new()
        .name("ctl-reports".into())
        .spawn(move || {
            let mut w = BufWriter::new(write_half);
            let lost = |e: std::io::Error| RuntimeError::external("reporting to worker 0", e);
            let r = (|| -> Result<()> {
                loop {
                    let report = match reports.recv_timeout(Duration::from_millis(200)) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) if c2.load(Ordering::Relaxed) => return Ok(()),
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => {
                            w.flush().map_err(lost)?;
                            w.get_ref().shutdown_write();
                            return Ok(());
                        }
                    };
                    let m = match report {
                        Report::Ack { id, task, states } => {
                            let storage = storage.as_ref().ok_or_else(|| {
                                RuntimeError::Internal("a checkpoint without checkpoint storage".into())
                            })?;
                            let mut files = Vec::with_capacity(states.len());
                            for (node, subtask, snapshot) in states {
                                files.push(storage.write_state(id, node, subtask, &snapshot)?);
                            }
                            ToLeader::Ack { id, task, files }
                        }
                        Report::AckWritten { id, task, files } => ToLeader::Ack { id, task, files },
                        Report::SourceEnded { task } => ToLeader::SourceEnded { task },
                        Report::Finished { task } => ToLeader::Finished { task },
                    };
                    write_value(&mut w, &m).map_err(lost)?;
                    if reports.is_empty() {
                        w.flush().map_err(lost)?;
                    }
                }
            })();
            if let Err(e) = r {
                fail(&e2, &c2, e);
            }
        })
        .map_err(|e| RuntimeError::external("spawning the report thread", e))?;
    std::thread::Builder::new()
        .name("ctl-in".into())
        .spawn(move || {
            let mut r = stream;
            let mut buf = Vec::new();
            loop {
                match read_value::<ToWorker>(&mut r, &mut buf, CONTROL_MAX) {
                    Ok(Some(ToWorker::Control { task, control })) => {
                        if matches!(control, Control::Terminate) {
                            // Only a stop with savepoint terminates tasks.
                            stopped.store(true, Ordering::SeqCst);
                        }
                        if let Some(tx) = controls.get(&task) {
                            let _ = tx.send(control);
                        }
                    }
                    Ok(Some(ToWorker::Restore(_))) => {}
                    // Worker 0 ended: after a complete job it has nothing more to say; if
                    // our tasks still run, they will not hear of checkpoints again.
                    Ok(None) => {
                        if running.load(Ordering::SeqCst) > 0 && !stopped.load(Ordering::SeqCst) {
                            fail(
                                &error,
                                &cancel,
                                RuntimeError::Internal(
                                    "worker 0 (the checkpoint coordinator) closed its connection while tasks here still run: it failed or was killed".into(),
                                ),
                            );
                        }
                        return;
                    }
                    Err(e) => {
                        if !cancel.load(Ordering::Relaxed) {
                            fail(&error, &cancel, RuntimeError::external("reading control messages of worker 0", e));
                        }
                        return;
                    }
                }
            }
        })
        .map_err(|e| RuntimeError::external("spawning the control thread", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerTasks {
        PeerTasks {
            worker: 1,
            tasks: [1, 3].into_iter().collect(),
            nodes: 2,
            subtask_worker: vec![0, 1],
        }
    }

    fn file(node: usize, subtask: usize, name: &str) -> StateFile {
        StateFile {
            node,
            subtask,
            file: name.into(),
            bytes: 1,
            checksum: 0,
            shared: Vec::new(),
            uploaded: 0,
        }
    }

    fn ack(files: Vec<StateFile>) -> ToLeader {
        ToLeader::Ack { id: 1, task: 3, files }
    }

    #[test]
    fn reports_of_the_workers_own_tasks_pass() {
        let none = HashSet::new();
        assert_eq!(peer().check(&ToLeader::SourceEnded { task: 1 }, &none), Ok(()));
        assert_eq!(peer().check(&ToLeader::Finished { task: 3 }, &none), Ok(()));
        assert_eq!(peer().check(&ack(vec![file(1, 1, "op-1-1.state")]), &none), Ok(()));
    }

    #[test]
    fn every_field_a_peer_sends_is_checked() {
        let none = HashSet::new();
        let p = peer();
        for (m, says) in [
            (ToLeader::SourceEnded { task: 1000 }, "task 1000"),
            (ToLeader::Finished { task: 0 }, "task 0"),
            (ack(vec![file(2, 1, "f")]), "operator 2"),
            (ack(vec![file(0, 0, "f")]), "subtask 0"),
            (ack(vec![file(0, 7, "f")]), "subtask 7"),
            (ack(vec![file(0, 1, "../../etc/passwd")]), "not a plain file name"),
            (ack(vec![file(0, 1, "..")]), "not a plain file name"),
        ] {
            let e = p.check(&m, &none).unwrap_err();
            assert!(e.contains(says), "{m:?}: {e}");
        }
        let mut shared = file(0, 1, "ok");
        shared.shared.push(floe_checkpoints::SharedFile {
            name: "/tmp/x.sst".into(),
            bytes: 1,
            checksum: Some(0),
        });
        assert!(p.check(&ack(vec![shared]), &none).is_err());
        let done: HashSet<usize> = [3].into_iter().collect();
        assert!(p
            .check(&ToLeader::Finished { task: 3 }, &done)
            .unwrap_err()
            .contains("twice"));
    }
}
