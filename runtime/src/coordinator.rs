//! The checkpoint coordinator: triggers checkpoints at the sources, collects every task's
//! acknowledgement with its state, writes the state in the background (the tasks go on),
//! completes the checkpoint with its manifest, and tells every task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use floe_checkpoints::{CheckpointStorage, Manifest, OperatorIdentity, StateFile};
use tracing::{info, warn};

use crate::element::CheckpointBarrier;
use crate::error::{Result, RuntimeError};
use crate::net::control::TaskControl;
use crate::task::{Control, Report};
use crate::time::Clock;

/// When and where checkpoints are taken.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Directory of the job's checkpoints (the job restores from the newest one in it).
    pub dir: std::path::PathBuf,
    /// Time between checkpoints; `None` takes only the final one and those asked for.
    pub interval: Option<Duration>,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// Complete checkpoints kept.
    pub retain: usize,
}

impl CheckpointConfig {
    /// Checkpoints in `dir` every `interval`, with the default timeout (60 s), pause (0) and
    /// retention (3).
    pub fn new(dir: impl Into<std::path::PathBuf>, interval: Option<Duration>) -> Self {
        CheckpointConfig {
            dir: dir.into(),
            interval,
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            retain: 3,
        }
    }
}

/// A checkpoint or savepoint the coordinator completed, or one it gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointEvent {
    /// Checkpoint `id` is complete.
    Completed {
        /// Its id.
        id: u64,
        /// Bytes of state it holds.
        bytes: u64,
        /// From trigger to completion, in ms.
        duration_ms: u64,
        /// Whether it was taken for a savepoint.
        is_savepoint: bool,
    },
    /// A savepoint was written into `dir` as checkpoint `id`.
    Savepoint {
        /// Where.
        dir: std::path::PathBuf,
        /// As which checkpoint.
        id: u64,
    },
    /// Checkpoint `id` was abandoned.
    Failed {
        /// Its id.
        id: u64,
        /// Why.
        reason: String,
    },
}

/// Events not taken yet, shared by the coordinator and the job's handle.
pub(crate) type CheckpointEvents = Arc<std::sync::Mutex<Vec<CheckpointEvent>>>;

fn push_event(events: &CheckpointEvents, e: CheckpointEvent) {
    if let Ok(mut v) = events.lock() {
        // Nobody may be taking them: keep the newest few hundred.
        if v.len() >= 512 {
            v.remove(0);
        }
        v.push(e);
    }
}

/// Requests to the coordinator from the job handle.
#[derive(Debug)]
pub(crate) enum Request {
    /// Take a checkpoint now.
    Trigger,
    /// Take a savepoint into `dir`; with `stop`, end the job right after it (nothing after
    /// it is committed, so the job resumes from it exactly).
    Savepoint { dir: std::path::PathBuf, stop: bool },
}

struct Pending {
    barrier: CheckpointBarrier,
    /// Where to copy the checkpoint when it completes, and whether to stop then.
    savepoint: Option<(std::path::PathBuf, bool)>,
    started: Instant,
    acked: Vec<bool>,
    /// State files written so far, by task.
    files: Vec<Vec<StateFile>>,
    is_final: bool,
}

/// The running coordinator's inputs and what it drives.
pub(crate) struct Coordinator {
    pub(crate) job: String,
    /// The job's operators by node, recorded in every manifest.
    pub(crate) operators: Vec<OperatorIdentity>,
    pub(crate) config: CheckpointConfig,
    pub(crate) storage: CheckpointStorage,
    pub(crate) parallelism: Vec<usize>,
    pub(crate) next_id: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) reports: Receiver<Report>,
    pub(crate) requests: Receiver<Request>,
    /// Control channels of every task, by task id.
    pub(crate) tasks: Vec<TaskControl>,
    /// Task ids of the sources.
    pub(crate) sources: Vec<usize>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) completed: Arc<std::sync::atomic::AtomicU64>,
    /// Set when the job stopped with a savepoint: its tasks end by cancellation, on purpose.
    pub(crate) stopped: Arc<AtomicBool>,
    /// Where completed checkpoints and savepoints are announced.
    pub(crate) events: CheckpointEvents,
}

/// The entry of task `task` in a per-task list: a report naming a task the job does not
/// have fails the job with this error, never the coordinator with a panic.
fn of_task<'a, T>(list: &'a mut [T], task: usize, report: &str) -> Result<&'a mut T> {
    let tasks = list.len();
    list.get_mut(task).ok_or_else(|| {
        RuntimeError::Internal(format!(
            "{report} reported for task {task}, but the job has {tasks} tasks"
        ))
    })
}

impl Coordinator {
    pub(crate) fn run(mut self) -> Result<()> {
        let mut pending: Option<Pending> = None;
        let mut ended = vec![false; self.tasks.len()];
        let mut finished = vec![false; self.tasks.len()];
        // The state files of every task in the newest complete checkpoint: a task that has
        // finished contributes them unchanged to later checkpoints.
        let mut last_files: Vec<Vec<StateFile>> = vec![Vec::new(); self.tasks.len()];
        let mut last_complete: Option<u64> = None;
        let mut final_wanted = false;
        let mut asked = false;
        let mut savepoints: Vec<(std::path::PathBuf, bool)> = Vec::new();
        let mut last_done = Instant::now();
        let mut next_due = self.config.interval.map(|i| Instant::now() + i);
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Trigger when due, or when every source has ended (the final checkpoint).
            let now = Instant::now();
            if pending.is_none() && now >= last_done + self.config.min_pause {
                let due = next_due.is_some_and(|d| now >= d);
                if due || final_wanted || asked || !savepoints.is_empty() {
                    let mut p = self.trigger(final_wanted, !savepoints.is_empty());
                    p.savepoint = (!savepoints.is_empty()).then(|| savepoints.remove(0));
                    pending = Some(p);
                    asked = false;
                    next_due = self.config.interval.map(|i| now + i);
                }
            }
            if let Some(p) = &pending {
                if p.started.elapsed() > self.config.timeout {
                    warn!(checkpoint = p.barrier.id, "checkpoint timed out; abandoned");
                    crate::metrics::checkpoints::failed(&self.job);
                    push_event(
                        &self.events,
                        CheckpointEvent::Failed {
                            id: p.barrier.id,
                            reason: format!("not complete after {:?}", self.config.timeout),
                        },
                    );
                    let was_final = p.is_final;
                    pending = None;
                    final_wanted |= was_final;
                    last_done = Instant::now();
                }
            }
            let wait = next_due
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50));
            match self.requests.try_recv() {
                Ok(Request::Trigger) => asked = true,
                Ok(Request::Savepoint { dir, stop }) => savepoints.push((dir, stop)),
                Err(_) => {}
            }
            match self.reports.recv_timeout(wait) {
                Ok(Report::SourceEnded { task }) => {
                    *of_task(&mut ended, task, "a source ended")? = true;
                    if self.sources.iter().all(|s| ended[*s]) {
                        final_wanted = true;
                    }
                }
                Ok(Report::Ack { id, task, states }) => {
                    let Some(p) = pending.as_mut().filter(|p| p.barrier.id == id) else {
                        continue; // an abandoned checkpoint
                    };
                    floe_failpoints::failpoint!("checkpoint.ack-received");
                    let files = of_task(&mut p.files, task, "an acknowledgement")?;
                    for (node, subtask, snapshot) in states {
                        files.push(self.storage.write_state(id, node, subtask, &snapshot)?);
                    }
                    *of_task(&mut p.acked, task, "an acknowledgement")? = true;
                }
                Ok(Report::AckWritten { id, task, files }) => {
                    let Some(p) = pending.as_mut().filter(|p| p.barrier.id == id) else {
                        continue;
                    };
                    of_task(&mut p.files, task, "an acknowledgement")?.extend(files);
                    *of_task(&mut p.acked, task, "an acknowledgement")? = true;
                }
                Ok(Report::Finished { task }) => {
                    *of_task(&mut finished, task, "an end")? = true;
                    if finished.iter().all(|f| *f) {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every task has ended.
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            let complete = pending
                .as_ref()
                .is_some_and(|p| p.acked.iter().zip(&finished).all(|(a, f)| *a || *f));
            if complete {
                let mut done = pending
                    .take()
                    .ok_or_else(|| RuntimeError::Internal("no pending checkpoint".into()))?;
                for ((acked, files), last) in done.acked.iter().zip(done.files.iter_mut()).zip(&last_files) {
                    if !acked {
                        // Finished before this checkpoint: its last state stands.
                        let from = last_complete
                            .ok_or_else(|| RuntimeError::Internal("finished task without state".into()))?;
                        for f in last {
                            files.push(self.storage.copy_state(from, done.barrier.id, f)?);
                        }
                    }
                }
                last_files.clone_from(&done.files);
                last_complete = Some(done.barrier.id);
                let is_final = done.is_final;
                let savepoint = done.savepoint.clone();
                let id = done.barrier.id;
                self.complete(done)?;
                last_done = Instant::now();
                if let Some((dir, stop)) = savepoint {
                    self.storage.copy_checkpoint(id, &dir)?;
                    info!(checkpoint = id, dir = %dir.display(), "savepoint written");
                    push_event(&self.events, CheckpointEvent::Savepoint { dir: dir.clone(), id });
                    if stop {
                        self.stopped.store(true, Ordering::SeqCst);
                        for t in &self.tasks {
                            t.send(Control::Terminate);
                        }
                        return Ok(());
                    }
                }
                if is_final {
                    return Ok(());
                }
            }
        }
    }

    fn trigger(&mut self, is_final: bool, is_savepoint: bool) -> Pending {
        let barrier = CheckpointBarrier {
            id: self.next_id,
            timestamp: self.clock.now(),
            is_savepoint,
        };
        self.next_id += 1;
        floe_failpoints::failpoint!("checkpoint.trigger");
        for s in &self.sources {
            self.tasks[*s].send(Control::Barrier(barrier));
        }
        Pending {
            barrier,
            savepoint: None,
            started: Instant::now(),
            acked: vec![false; self.tasks.len()],
            files: vec![Vec::new(); self.tasks.len()],
            is_final,
        }
    }

    fn complete(&mut self, p: Pending) -> Result<()> {
        let manifest = Manifest {
            job: self.job.clone(),
            checkpoint_id: p.barrier.id,
            timestamp: p.barrier.timestamp,
            is_savepoint: p.barrier.is_savepoint,
            parallelism: self.parallelism.clone(),
            operators: self.operators.clone(),
            files: p.files.into_iter().flatten().collect(),
            ..Manifest::default()
        };
        self.storage.complete(&manifest)?;
        self.completed.store(p.barrier.id, Ordering::SeqCst);
        crate::metrics::checkpoints::completed(&self.job, p.barrier.id, p.started.elapsed(), manifest.size());
        push_event(
            &self.events,
            CheckpointEvent::Completed {
                id: p.barrier.id,
                bytes: manifest.size(),
                duration_ms: p.started.elapsed().as_millis() as u64,
                is_savepoint: p.barrier.is_savepoint,
            },
        );
        info!(
            checkpoint = p.barrier.id,
            bytes = manifest.size(),
            ms = p.started.elapsed().as_millis() as u64,
            "checkpoint complete"
        );
        floe_failpoints::failpoint!("checkpoint.before-notify");
        for t in &self.tasks {
            t.send(Control::CheckpointComplete(p.barrier.id));
        }
        floe_failpoints::failpoint!("checkpoint.after-notify");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    /// A coordinator of `tasks` tasks (task 0 a source) and the channel its reports arrive on.
    fn coordinator(tasks: usize, dir: &std::path::Path) -> (Coordinator, crossbeam_channel::Sender<Report>) {
        let (reports_tx, reports) = unbounded();
        let (_requests_tx, requests) = unbounded();
        let controls = (0..tasks).map(|_| TaskControl::Local(unbounded().0)).collect();
        let c = Coordinator {
            job: "coordinator-test".into(),
            config: CheckpointConfig::new(dir, None),
            storage: CheckpointStorage::new(dir, 3).unwrap(),
            parallelism: vec![tasks],
            next_id: 1,
            clock: Arc::new(crate::time::SystemClock),
            reports,
            requests,
            tasks: controls,
            sources: vec![0],
            cancel: Arc::new(AtomicBool::new(false)),
            completed: Arc::default(),
            stopped: Arc::default(),
            events: CheckpointEvents::default(),
            operators: Vec::new(),
        };
        (c, reports_tx)
    }

    #[test]
    fn reports_of_tasks_the_job_does_not_have_fail_the_job_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for report in [
            Report::SourceEnded { task: 1000 },
            Report::Finished { task: 2 },
            Report::AckWritten {
                id: 1,
                task: usize::MAX,
                files: Vec::new(),
            },
        ] {
            let (c, tx) = coordinator(2, dir.path());
            let what = format!("{report:?}");
            // A final checkpoint is pending once the source ended, so acknowledgements are
            // looked at.
            tx.send(Report::SourceEnded { task: 0 }).unwrap();
            tx.send(report).unwrap();
            let e = std::thread::spawn(move || c.run())
                .join()
                .expect("no panic")
                .unwrap_err();
            assert!(e.to_string().contains("but the job has 2 tasks"), "{what}: {e}");
        }
    }
}
