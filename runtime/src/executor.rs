//! Turns a job graph into running tasks: chaining, channels, threads, restore, the
//! checkpoint coordinator, and failure handling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Sender};
use floe_checkpoints::{
    CheckpointStorage, KeyGroupRange, RestoredCheckpoint, StateBackendKind, StateError, StateSnapshot,
    DEFAULT_MAX_PARALLELISM,
};
use tracing::{info, info_span, warn};

use crate::chain::{panic_message, Link, LinkOutput};
use crate::coordinator::{CheckpointConfig, CheckpointEvent, CheckpointEvents, Coordinator, Request};
use crate::element::{CheckpointBarrier, Message};
use crate::error::{Result, RuntimeError};
use crate::graph::{JobGraph, NodeId, NodeKind, OutputSlot, ShipStrategy};
use crate::net::accept::{Acceptor, ControlHandler};
use crate::net::control::{follow_leader, serve_worker, NetError, NetShared, PeerTasks, RestoreFrom, TaskControl};
use crate::net::data::{Inbound, Outbound};
use crate::net::{Hello, Placement};
use crate::operator::{OperatorContext, TaskInfo};
use crate::route::EdgeWriter;
use crate::state_dir::AttemptDir;
use crate::task::{Control, InputChannel, OperatorTask, SourceTask, TaskLink};
use crate::time::{Clock, SystemClock};

/// How a job is executed.
#[derive(Clone, Debug)]
pub struct ExecutionConfig {
    /// Records per batch between tasks.
    pub batch_size: usize,
    /// Batches a channel holds before its producer waits (backpressure).
    pub channel_capacity: usize,
    /// Whether operators on forward edges of equal parallelism call each other directly.
    pub chaining: bool,
    /// Number of key groups.
    pub max_parallelism: u16,
    /// Backend of keyed state.
    pub state_backend: StateBackendKind,
    /// Processing time.
    pub clock: Arc<dyn Clock>,
    /// Checkpoints, if the job takes them; the job restores from the newest complete one
    /// in their directory.
    pub checkpoints: Option<CheckpointConfig>,
    /// A savepoint (or checkpoint) directory to restore from instead, at any parallelism:
    /// its newest complete checkpoint, which must be intact.
    pub restore_from: Option<std::path::PathBuf>,
    /// When checkpoints were taken but none can be restored (all corrupt or gone), start
    /// from scratch with a warning instead of failing. Never applies to `restore_from`.
    pub allow_fresh_start: bool,
    /// Restore a checkpoint or savepoint that holds state of operators this job no longer
    /// has, dropping that state (Flink's `allowNonRestoredState`); without, it is refused.
    pub allow_non_restored_state: bool,
    /// Set when this process is one of several workers running the job: which subtasks run
    /// here, and how to reach the others.
    pub placement: Option<Arc<Placement>>,
    /// The largest frame (one encoded batch) sent to or accepted from another worker: a
    /// larger batch fails the job with an error saying so.
    pub max_frame_bytes: usize,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            batch_size: 1024,
            channel_capacity: 8,
            chaining: true,
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            state_backend: StateBackendKind::Memory,
            clock: Arc::new(SystemClock),
            checkpoints: None,
            restore_from: None,
            allow_fresh_start: false,
            allow_non_restored_state: false,
            placement: None,
            max_frame_bytes: crate::net::DEFAULT_MAX_FRAME,
        }
    }
}

/// What a finished job reports.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// Name of the job.
    pub job_name: String,
    /// Wall time from start to the end of the last task.
    pub duration: Duration,
    /// Number of tasks (threads) the job ran.
    pub tasks: usize,
    /// The checkpoint the job restored from, if any.
    pub restored_from: Option<u64>,
    /// The id of the last completed checkpoint, if any.
    pub last_checkpoint: Option<u64>,
}

/// A cloneable remote for a running job: checkpoints, savepoints, stop, cancel (from
/// another thread, e.g. a signal handler, while one waits in [`JobHandle::join`]).
#[derive(Clone)]
pub struct JobControl {
    sources: Vec<TaskControl>,
    requests: Option<Sender<Request>>,
    cancel: Arc<AtomicBool>,
    events: CheckpointEvents,
    stopped: Arc<AtomicBool>,
}

impl JobControl {
    /// See [`JobHandle::trigger_savepoint`].
    pub fn trigger_savepoint(&self, dir: impl Into<std::path::PathBuf>) -> bool {
        self.requests.as_ref().is_some_and(|r| {
            r.send(Request::Savepoint {
                dir: dir.into(),
                stop: false,
            })
            .is_ok()
        })
    }

    /// See [`JobHandle::stop_with_savepoint`].
    pub fn stop_with_savepoint(&self, dir: impl Into<std::path::PathBuf>) -> bool {
        self.requests.as_ref().is_some_and(|r| {
            r.send(Request::Savepoint {
                dir: dir.into(),
                stop: true,
            })
            .is_ok()
        })
    }

    /// See [`JobHandle::stop`].
    pub fn stop(&self) {
        for c in &self.sources {
            c.send(Control::Stop);
        }
    }

    /// See [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Asks the coordinator for a checkpoint now (with checkpoints configured); returns
    /// whether the request was taken.
    pub fn trigger_checkpoint(&self) -> bool {
        self.requests.as_ref().is_some_and(|r| r.send(Request::Trigger).is_ok())
    }

    /// Takes the checkpoints and savepoints completed since the last call (with
    /// checkpoints configured; on workers other than worker 0, none).
    pub fn take_checkpoint_events(&self) -> Vec<CheckpointEvent> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    /// Whether the job stopped with a savepoint.
    pub fn stopped_with_savepoint(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Whether the job is being cancelled (a task failed, or someone cancelled it).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// A running job.
pub struct JobHandle {
    name: String,
    started: Instant,
    threads: Vec<(String, JoinHandle<Result<()>>)>,
    coordinator: Option<JoinHandle<Result<()>>>,
    sources: Vec<TaskControl>,
    /// Control channels of all tasks, kept open for the life of the job.
    _controls: Vec<TaskControl>,
    requests: Option<Sender<Request>>,
    cancel: Arc<AtomicBool>,
    next_checkpoint: AtomicU64,
    completed: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    restored_from: Option<u64>,
    clock: Arc<dyn Clock>,
    /// This run's RocksDB directory, removed after every task has ended.
    _state_dir: Option<AttemptDir>,
    /// The first failure of the network threads (workers only).
    net_error: NetError,
    /// Checkpoints and savepoints completed, until someone takes them.
    events: CheckpointEvents,
}

impl JobHandle {
    /// Starts a checkpoint: with checkpoints configured, the coordinator takes one as soon
    /// as none is in flight; without, barrier `n` is injected at every source and flows
    /// through the graph (aligned at every operator with several inputs). Returns `n` in
    /// the second case, 0 in the first.
    pub fn trigger_checkpoint(&self) -> u64 {
        if let Some(r) = &self.requests {
            let _ = r.send(Request::Trigger);
            return 0;
        }
        let id = self.next_checkpoint.fetch_add(1, Ordering::SeqCst);
        let barrier = CheckpointBarrier {
            id,
            timestamp: self.clock.now(),
            is_savepoint: false,
        };
        for c in &self.sources {
            // A source that already finished has dropped its receiver: nothing to do there.
            c.send(Control::Barrier(barrier));
        }
        id
    }

    /// A cloneable remote for this job.
    pub fn control(&self) -> JobControl {
        JobControl {
            sources: self.sources.clone(),
            requests: self.requests.clone(),
            cancel: self.cancel.clone(),
            events: self.events.clone(),
            stopped: self.stopped.clone(),
        }
    }

    /// Writes a savepoint into `dir` (the job goes on); resume from it with
    /// [`ExecutionConfig::restore_from`]. Needs checkpoints configured; returns whether the
    /// request was taken.
    pub fn trigger_savepoint(&self, dir: impl Into<std::path::PathBuf>) -> bool {
        self.savepoint(dir.into(), false)
    }

    /// Writes a savepoint into `dir` and ends the job right after it: what was written after
    /// it is not committed, so a job resumed from it continues exactly. [`join`](Self::join)
    /// then returns normally.
    pub fn stop_with_savepoint(&self, dir: impl Into<std::path::PathBuf>) -> bool {
        self.savepoint(dir.into(), true)
    }

    fn savepoint(&self, dir: std::path::PathBuf, stop: bool) -> bool {
        let control = self.control();
        if stop {
            control.stop_with_savepoint(dir)
        } else {
            control.trigger_savepoint(dir)
        }
    }

    /// Whether the job stopped with a savepoint.
    pub fn stopped_with_savepoint(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The id of the newest completed checkpoint (0 if none).
    pub fn last_checkpoint(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Stops the sources as if their input had ended: windows fire, sinks flush (and, with
    /// checkpoints, commit after a final checkpoint), the job finishes normally.
    pub fn stop(&self) {
        for c in &self.sources {
            c.send(Control::Stop);
        }
    }

    /// Cancels every task; [`join`](Self::join) then reports [`RuntimeError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Waits for the job to end; the error, if any, is the first failure (the root cause),
    /// not the cancellations it caused in other tasks.
    pub fn join(self) -> Result<JobResult> {
        let mut root: Option<RuntimeError> = None;
        let mut cancelled = false;
        let tasks = self.threads.len();
        let mut record = |r: Result<()>| match r {
            Ok(()) => {}
            Err(e) if e.is_cancellation() => cancelled = true,
            Err(e) => {
                if root.is_none() {
                    root = Some(e);
                }
            }
        };
        for (name, t) in self.threads {
            record(t.join().unwrap_or_else(|p| {
                Err(RuntimeError::Panic(format!(
                    "task {name}: {}",
                    panic_message(p.as_ref())
                )))
            }));
        }
        if let Some(c) = self.coordinator {
            self.cancel.store(true, Ordering::SeqCst);
            record(c.join().unwrap_or_else(|p| {
                Err(RuntimeError::Panic(format!(
                    "checkpoint coordinator: {}",
                    panic_message(p.as_ref())
                )))
            }));
        }
        if let Some(e) = root {
            return Err(e);
        }
        if cancelled && !self.stopped.load(Ordering::SeqCst) {
            let net = self.net_error.lock().ok().and_then(|mut e| e.take());
            return Err(net.unwrap_or(RuntimeError::Cancelled));
        }
        let duration = self.started.elapsed();
        info!(job = %self.name, ?duration, "job finished");
        let last = self.completed.load(Ordering::SeqCst);
        Ok(JobResult {
            job_name: self.name,
            duration,
            tasks,
            restored_from: self.restored_from,
            last_checkpoint: (last > 0).then_some(last),
        })
    }
}

/// A fresh id for a run of a job: the time (in units of 2^32 ns, about 4 s), the process id
/// and a process-wide counter, so that runs in one process, in successive processes and in
/// processes started at the same moment all differ.
fn new_attempt_id() -> u64 {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let pid = u64::from(std::process::id()) & 0xffff;
    (nanos & !0xffff_ffff) | (pid << 16) | (RUNS.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// The run id of cluster attempt `attempt`, the same on every worker of it: the attempt
/// (unique per job manager) under a hash of the job's checkpoint directory (unique per job,
/// it holds the job's id), so runs of other jobs writing to the same place differ too.
fn spread_attempt_id(attempt: u64, checkpoints: Option<&std::path::Path>) -> u64 {
    let job = floe_checkpoints::key_group_hash(
        checkpoints
            .map(|p| p.as_os_str().as_encoded_bytes())
            .unwrap_or_default(),
    );
    (job & !0xffff_ffff) | (attempt & 0xffff_ffff)
}

/// Runs `graph` to completion.
pub fn execute(graph: &JobGraph, config: &ExecutionConfig) -> Result<JobResult> {
    spawn(graph, config)?.join()
}

/// Which node each node is chained to (its predecessor in the same task), if any.
pub(crate) fn chained_predecessors(graph: &JobGraph, config: &ExecutionConfig) -> Vec<Option<NodeId>> {
    graph
        .nodes
        .iter()
        .map(|n| {
            if !config.chaining || !n.chainable || matches!(n.kind, NodeKind::Source(_)) {
                return None;
            }
            let mut ins = graph.inputs_of(n.id);
            let e = ins.next()?;
            if ins.next().is_some() || e.ship != ShipStrategy::Forward || e.slot != OutputSlot::Main {
                return None;
            }
            let up = &graph.nodes[e.from];
            let consumers = graph.outputs_of(up.id).filter(|o| o.slot == OutputSlot::Main).count();
            (up.parallelism == n.parallelism && consumers == 1).then_some(up.id)
        })
        .collect()
}

/// What to do when a restore is refused, said in the terms of the job's options.
const FRESH_START_HINT: &str = "The job does not start from scratch over checkpoints on its own: repair or put back \
     the files, or start from scratch with --allow-fresh-start (FLOE_ALLOW_FRESH_START=true), which leaves the state \
     they held behind";
const FOREIGN_HINT: &str = "Restore this job from its own checkpoint directory or savepoint. If the job was changed, \
     give its stateful operators stable ids with .uid(\"...\") (state is matched to operators by them), or pass \
     --allow-non-restored-state (FLOE_ALLOW_NON_RESTORED_STATE=true) to drop the state of operators it no longer has";

/// Opens the checkpoint storage and finds the checkpoint to restore from: the newest
/// complete savepoint in `restore_from` (which must be intact), else the newest intact
/// checkpoint in the job's directory. Never starts from scratch over checkpoints that exist
/// unless `allow_fresh_start` says so.
fn restore_point(
    config: &CheckpointConfig,
    exec: &ExecutionConfig,
) -> Result<(CheckpointStorage, Option<RestoredCheckpoint>)> {
    let storage = CheckpointStorage::new(&config.dir, config.retain)?;
    let restored = match &exec.restore_from {
        Some(path) => match CheckpointStorage::new(path, usize::MAX)?.newest_complete() {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                return Err(RuntimeError::Restore(format!(
                    "no complete savepoint in {}: give the directory a savepoint was written to",
                    path.display()
                )))
            }
            Err(e) => return Err(RuntimeError::Restore(format!("the savepoint cannot be restored: {e}"))),
        },
        None => match storage.latest() {
            Ok(r) => r,
            Err(e @ StateError::Unrestorable { .. }) if exec.allow_fresh_start => {
                warn!(
                    "STARTING FROM SCRATCH (--allow-fresh-start): {e}. The state those checkpoints held is NOT \
                     restored; new checkpoints replace them"
                );
                None
            }
            Err(e @ StateError::Unrestorable { .. }) => {
                return Err(RuntimeError::Restore(format!("{e}. {FRESH_START_HINT}")))
            }
            Err(e) => return Err(e.into()),
        },
    };
    match &restored {
        Some(r) => {
            for id in &r.incomplete {
                info!(
                    "checkpoint {id} never completed (it was in flight when the job stopped); restoring an older one"
                );
            }
            for (id, why) in &r.skipped {
                warn!("skipping checkpoint {id}, which cannot be restored: {why}");
            }
            info!(
                checkpoint = r.manifest.checkpoint_id,
                location = %r.location,
                bytes = r.manifest.size(),
                "restoring from checkpoint"
            );
        }
        None => info!(dir = %config.dir.display(), "no checkpoint to restore: the job starts from scratch"),
    }
    Ok((storage, restored))
}

/// Which node of `restored` each node of `graph` restores its state from (see
/// [`RestoredCheckpoint::assign`]); refuses a checkpoint of another job.
fn assign_restored_state(
    graph: &JobGraph,
    restored: Option<&RestoredCheckpoint>,
    allow_non_restored_state: bool,
) -> Result<Vec<Option<NodeId>>> {
    let Some(r) = restored else {
        return Ok(Vec::new());
    };
    let assignment = r
        .assign(&graph.name, &graph.operator_identities(), allow_non_restored_state)
        .map_err(|e| RuntimeError::Restore(format!("{e}. {FOREIGN_HINT}")))?;
    for o in &assignment.dropped {
        warn!(operator = %o, "its state is dropped: this job has no such operator (--allow-non-restored-state)");
    }
    for o in &assignment.fresh {
        info!(operator = %o, "starts without state: the checkpoint has none for it");
    }
    Ok(assignment.restores)
}

/// Starts `graph` and returns a handle to the running job.
pub fn spawn(graph: &JobGraph, config: &ExecutionConfig) -> Result<JobHandle> {
    graph.validate()?;
    if config.max_parallelism == 0 {
        return Err(RuntimeError::InvalidGraph("max parallelism must be at least 1".into()));
    }
    if let Some(n) = graph
        .nodes
        .iter()
        .find(|n| n.parallelism > usize::from(config.max_parallelism))
    {
        return Err(RuntimeError::InvalidGraph(format!(
            "operator `{}` has parallelism {} above the max parallelism {}: raise max parallelism or lower parallelism",
            n.name, n.parallelism, config.max_parallelism
        )));
    }
    let placement = config.placement.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let net_error: NetError = NetError::default();
    // Workers other than worker 0 restore what worker 0 tells them over their control
    // connection, made first.
    let mut leader_conn = None;
    let mut restore_wire = None;
    let (storage, restored) = match (&config.checkpoints, &placement) {
        (None, Some(_)) => {
            return Err(RuntimeError::InvalidGraph(
                "a job spread over workers needs a checkpoint directory shared by all of them".into(),
            ))
        }
        (Some(c), Some(p)) if !p.is_leader() => {
            p.validate(graph.nodes.iter().map(|n| n.parallelism).max().unwrap_or(1))?;
            let (conn, restored) = crate::net::join_leader(p, &cancel)?;
            leader_conn = Some(conn);
            (Some(CheckpointStorage::new(&c.dir, c.retain)?), restored)
        }
        (Some(c), _) => {
            if let Some(p) = &placement {
                p.validate(graph.nodes.iter().map(|n| n.parallelism).max().unwrap_or(1))?;
            }
            let (s, r) = restore_point(c, config)?;
            restore_wire = r.as_ref().map(|r| RestoreFrom {
                location: config
                    .restore_from
                    .as_deref()
                    .unwrap_or(&c.dir)
                    .to_string_lossy()
                    .into_owned(),
                checkpoint: r.manifest.checkpoint_id,
            });
            (Some(s), r)
        }
        (None, None) if config.restore_from.is_some() => {
            return Err(RuntimeError::InvalidGraph(
                "restoring from a savepoint needs a checkpoint directory for the resumed job".into(),
            ))
        }
        (None, None) => (None, None),
    };
    let restores = assign_restored_state(graph, restored.as_ref(), config.allow_non_restored_state)?;
    let pred = chained_predecessors(graph, config);
    let mut successor: Vec<Option<NodeId>> = vec![None; graph.nodes.len()];
    for (n, p) in pred.iter().enumerate() {
        if let Some(p) = p {
            successor[*p] = Some(n);
        }
    }

    // Channels of every edge that is not chained: senders by (edge, upstream subtask),
    // receivers by (downstream node, downstream subtask).
    let mut senders: HashMap<(usize, usize), Vec<Sender<Message>>> = HashMap::new();
    let mut receivers: HashMap<(NodeId, usize), Vec<InputChannel>> = HashMap::new();
    let local = |subtask: usize| placement.as_ref().is_none_or(|p| p.is_local(subtask));
    // Channels to and from subtasks on other workers, served by network threads.
    let mut outbound: Vec<Outbound> = Vec::new();
    let mut inbound: HashMap<(usize, usize, usize), Inbound> = HashMap::new();
    for (ei, e) in graph.edges.iter().enumerate() {
        if pred[e.to] == Some(e.from) && e.slot == OutputSlot::Main {
            continue;
        }
        let (pu, pd) = (graph.nodes[e.from].parallelism, graph.nodes[e.to].parallelism);
        for i in 0..pu {
            let targets: Vec<usize> = if e.ship == ShipStrategy::Forward {
                vec![i]
            } else {
                (0..pd).collect()
            };
            for j in targets {
                if !local(i) && !local(j) {
                    continue;
                }
                let (tx, rx) = bounded(config.channel_capacity.max(1));
                match (&placement, local(i), local(j)) {
                    (Some(p), true, false) => {
                        senders.entry((ei, i)).or_default().push(tx);
                        outbound.push(Outbound {
                            rx,
                            addr: p.peers[p.worker_of(j)],
                            hello: Hello::Data {
                                attempt: p.attempt,
                                edge: ei,
                                from: i,
                                to: j,
                            },
                            secret: p.secret.clone(),
                            codec: e.codec.clone(),
                            max_frame: config.max_frame_bytes,
                        });
                    }
                    (Some(p), false, true) => {
                        receivers
                            .entry((e.to, j))
                            .or_default()
                            .push(InputChannel { rx, input: e.input });
                        let from = format!(
                            "worker {} (`{}` {} to `{}` {})",
                            p.worker_of(i),
                            graph.nodes[e.from].name,
                            i,
                            graph.nodes[e.to].name,
                            j
                        );
                        inbound.insert(
                            (ei, i, j),
                            Inbound {
                                tx,
                                codec: e.codec.clone(),
                                from,
                                max_frame: config.max_frame_bytes,
                            },
                        );
                    }
                    _ => {
                        senders.entry((ei, i)).or_default().push(tx);
                        receivers
                            .entry((e.to, j))
                            .or_default()
                            .push(InputChannel { rx, input: e.input });
                    }
                }
            }
        }
    }

    let (report_tx, report_rx) = unbounded();
    let reports = storage.as_ref().map(|_| report_tx);
    let mut task_controls: Vec<TaskControl> = Vec::new();
    // Control messages for each worker's tasks (used on worker 0), and this worker's own
    // tasks by id (used on the others).
    let workers = placement.as_ref().map_or(1, |p| p.peers.len());
    let (to_worker, from_leader): (Vec<_>, Vec<_>) = (0..workers).map(|_| unbounded()).unzip();
    let mut tasks_of_worker = vec![std::collections::HashSet::new(); workers];
    let mut local_controls: HashMap<usize, Sender<Control>> = HashMap::new();
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut source_tasks: Vec<usize> = Vec::new();
    // Every worker of a spread attempt must name the run alike: sinks name and clean up
    // their files by it (a subtask must never take another worker's files for those of a
    // failed run).
    let attempt = match &placement {
        Some(p) => spread_attempt_id(p.attempt, config.checkpoints.as_ref().map(|c| c.dir.as_path())),
        None => new_attempt_id(),
    };
    let state_dir = match &config.state_backend {
        StateBackendKind::RocksDb { dir, .. } => {
            // Workers of one attempt share its run id; on one machine and state directory
            // (tests, or task managers sharing a work directory) each claims its own.
            let owner = match &placement {
                Some(p) => format!("{}-w{}", graph.name, p.worker),
                None => graph.name.clone(),
            };
            Some(AttemptDir::claim(dir, &owner, attempt)?)
        }
        StateBackendKind::Memory => None,
    };
    let mut handle = JobHandle {
        name: graph.name.clone(),
        started: Instant::now(),
        threads: Vec::new(),
        coordinator: None,
        sources: Vec::new(),
        _controls: Vec::new(),
        requests: None,
        cancel: cancel.clone(),
        next_checkpoint: AtomicU64::new(1),
        completed: Arc::new(AtomicU64::new(0)),
        stopped: Arc::new(AtomicBool::new(false)),
        restored_from: restored.as_ref().map(|r| r.manifest.checkpoint_id),
        clock: config.clock.clone(),
        _state_dir: state_dir,
        net_error: net_error.clone(),
        events: CheckpointEvents::default(),
    };

    let info_for = |node: NodeId, i: usize| {
        let n = &graph.nodes[node];
        TaskInfo {
            job_name: graph.name.clone(),
            operator_name: n.name.clone(),
            node,
            subtask_index: i,
            parallelism: n.parallelism,
            max_parallelism: config.max_parallelism,
            key_group_range: KeyGroupRange::for_subtask(config.max_parallelism, n.parallelism, i),
            state_backend: config.state_backend.clone(),
            batch_size: config.batch_size,
            checkpointing: config.checkpoints.is_some(),
            attempt,
            restored_checkpoint: restored.as_ref().map(|r| r.manifest.checkpoint_id),
        }
    };
    let context_for = |info: TaskInfo| {
        let mut ctx = OperatorContext::new(info, config.clock.clone());
        let i = ctx.info();
        if let (Some(r), Some(Some(old))) = (&restored, restores.get(i.node)) {
            let part = StateSnapshot::for_subtask(
                &r.node_snapshots(*old),
                i.key_group_range,
                i.subtask_index,
                i.parallelism,
            );
            ctx.set_restored_state(part);
        }
        ctx
    };

    // The output of `node` at subtask `i`: its chained successor or its edge writers.
    let mut build_output = |node: NodeId, i: usize, next: Option<Box<Link>>| -> LinkOutput {
        let mut out = LinkOutput {
            next,
            ..Default::default()
        };
        for (ei, e) in graph.edges.iter().enumerate() {
            if e.from != node {
                continue;
            }
            let Some(tx) = senders.remove(&(ei, i)) else { continue };
            let w: Box<dyn EdgeWriter> = e.writer.create(tx, i, config.batch_size);
            match e.slot {
                OutputSlot::Main => out.main.push(w),
                OutputSlot::Side(tag) => match out.side.iter_mut().find(|(t, _)| *t == tag) {
                    Some((_, ws)) => ws.push(w),
                    None => out.side.push((tag, vec![w])),
                },
            }
        }
        out
    };

    for head in graph.nodes.iter().filter(|n| pred[n.id].is_none()) {
        let mut chain = vec![head.id];
        while let Some(s) = successor[*chain.last().unwrap_or(&head.id)] {
            chain.push(s);
        }
        let chain_name = chain
            .iter()
            .map(|&n| graph.nodes[n].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
        for i in 0..head.parallelism {
            if let Some(p) = placement.as_ref().filter(|p| !p.is_local(i)) {
                // Runs on another worker: only its id and where its control messages go.
                let id = task_controls.len();
                let control = TaskControl::Remote {
                    task: id,
                    to: to_worker[p.worker_of(i)].clone(),
                };
                if let Some(t) = tasks_of_worker.get_mut(p.worker_of(i)) {
                    t.insert(id);
                }
                task_controls.push(control.clone());
                if matches!(head.kind, NodeKind::Source(_)) {
                    source_tasks.push(id);
                    handle.sources.push(control);
                }
                continue;
            }
            // Build the chain from its tail so each link owns its successor.
            let mut next: Option<Box<Link>> = None;
            for &node in chain.iter().skip(1).rev() {
                let info = info_for(node, i);
                let NodeKind::Operator(factory) = &graph.nodes[node].kind else {
                    return Err(RuntimeError::Internal("a source cannot be chained".into()));
                };
                let op = factory(&info)?;
                let out = build_output(node, i, next.take());
                next = Some(Box::new(Link {
                    op,
                    ctx: context_for(info),
                    out,
                }));
            }
            let out = build_output(head.id, i, next);
            let ctx = context_for(info_for(head.id, i));
            let (ctl_tx, ctl_rx) = unbounded();
            let link = TaskLink {
                id: task_controls.len(),
                cancel: cancel.clone(),
                control: ctl_rx,
                reports: reports.clone(),
            };
            task_controls.push(TaskControl::Local(ctl_tx.clone()));
            local_controls.insert(link.id, ctl_tx.clone());
            let span = info_span!("task", job = %graph.name, operator = %chain_name, subtask = i);
            let runner: Box<dyn FnOnce() -> Result<()> + Send> = match &head.kind {
                NodeKind::Source(factory) => {
                    let source = factory(ctx.info())?;
                    source_tasks.push(link.id);
                    handle.sources.push(TaskControl::Local(ctl_tx));
                    let task = SourceTask { source, ctx, out, link };
                    Box::new(move || task.run())
                }
                NodeKind::Operator(factory) => {
                    let op = factory(ctx.info())?;
                    let inputs = receivers.remove(&(head.id, i)).unwrap_or_default();
                    let task = OperatorTask {
                        inputs,
                        head: Link { op, ctx, out },
                        link,
                    };
                    Box::new(move || task.run())
                }
            };
            let cancel = cancel.clone();
            let running = running.clone();
            running.fetch_add(1, Ordering::SeqCst);
            let name = format!("{chain_name} ({}/{})", i + 1, head.parallelism);
            let thread_name: String = format!("{}-{}", graph.nodes[head.id].name, i)
                .chars()
                .take(15)
                .collect();
            let t = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || {
                    let _entered = span.enter();
                    let r = runner();
                    running.fetch_sub(1, Ordering::SeqCst);
                    if let Err(e) = &r {
                        if !e.is_cancellation() {
                            warn!(error = %e, "task failed; cancelling the job");
                        }
                        cancel.store(true, Ordering::SeqCst);
                    }
                    r
                })
                .map_err(|e| RuntimeError::external("spawning a task thread", e))?;
            handle.threads.push((name, t));
        }
    }

    handle._controls = task_controls.clone();
    if let Some(p) = &placement {
        // Network threads: one per outgoing channel, one accepting the incoming ones (and,
        // on worker 0, the other workers' control connections).
        for out in outbound {
            let name = format!("net-out {:?}", out.hello);
            let (c, e) = (cancel.clone(), net_error.clone());
            let t = std::thread::Builder::new()
                .name("net-out".into())
                .spawn(move || {
                    out.run(c.clone()).map_err(|err| {
                        crate::net::control::fail(&e, &c, err);
                        RuntimeError::Cancelled
                    })
                })
                .map_err(|e| RuntimeError::external("spawning a network thread", e))?;
            handle.threads.push((name, t));
        }
        let mut controls: HashMap<usize, ControlHandler> = HashMap::new();
        let mut from_leader = from_leader.into_iter();
        let _ = from_leader.next();
        if p.is_leader() {
            for (w, rx) in (1..workers).zip(from_leader) {
                let (restore, reports) = (restore_wire.clone(), reports.clone());
                let net = NetShared {
                    cancel: cancel.clone(),
                    error: net_error.clone(),
                };
                let peer = PeerTasks {
                    worker: w,
                    tasks: std::mem::take(&mut tasks_of_worker[w]),
                    nodes: graph.nodes.len(),
                    subtask_worker: p.subtask_worker.clone(),
                };
                let Some(reports) = reports else { break };
                controls.insert(
                    w,
                    Box::new(move |stream| serve_worker(peer, stream, restore, rx, reports, net)),
                );
            }
        }
        let acceptor = Acceptor {
            listener: p.take_listener()?,
            secret: p.secret.clone(),
            attempt: p.attempt,
            data: inbound,
            controls,
        };
        let (c, e) = (cancel.clone(), net_error.clone());
        let t = std::thread::Builder::new()
            .name("net-accept".into())
            .spawn(move || acceptor.run(c, e))
            .map_err(|e| RuntimeError::external("spawning a network thread", e))?;
        handle.threads.push(("network input".into(), t));
        if let Some(conn) = leader_conn {
            follow_leader(
                conn,
                local_controls,
                report_rx,
                storage,
                handle.stopped.clone(),
                running,
                NetShared {
                    cancel: cancel.clone(),
                    error: net_error.clone(),
                },
            )?;
            return Ok(handle);
        }
    }
    if let (Some(storage), Some(cfg)) = (storage, &config.checkpoints) {
        // Never reuse an id the directory holds, whatever was restored.
        let next_id = storage.newest_id()?.max(handle.restored_from).map_or(1, |id| id + 1);
        let (req_tx, req_rx) = unbounded();
        handle.requests = Some(req_tx);
        let coordinator = Coordinator {
            job: graph.name.clone(),
            operators: graph.operator_identities(),
            config: cfg.clone(),
            storage,
            parallelism: graph.nodes.iter().map(|n| n.parallelism).collect(),
            next_id,
            clock: config.clock.clone(),
            reports: report_rx,
            requests: req_rx,
            tasks: task_controls,
            sources: source_tasks,
            cancel: cancel.clone(),
            completed: handle.completed.clone(),
            stopped: handle.stopped.clone(),
            events: handle.events.clone(),
        };
        let t = std::thread::Builder::new()
            .name("checkpoints".into())
            .spawn(move || {
                let r = coordinator.run();
                if r.is_err() {
                    cancel.store(true, Ordering::SeqCst);
                }
                r
            })
            .map_err(|e| RuntimeError::external("spawning the checkpoint coordinator", e))?;
        handle.coordinator = Some(t);
    }
    Ok(handle)
}
