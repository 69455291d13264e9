//! The operator and source traits, and what they see of their task.

use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::{KeyGroupRange, KeyedStateBackend, StateBackendKind, StateKey, StateSnapshot};

use crate::element::{Batch, CheckpointBarrier, Timestamp, MIN_WATERMARK};
use crate::error::Result;
use crate::time::Clock;

/// Who a subtask is: its job, operator, index and the key groups it owns.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// Name of the job.
    pub job_name: String,
    /// Name of the operator.
    pub operator_name: String,
    /// The operator's node in the job graph (stable across runs of the same job).
    pub node: usize,
    /// Index of this subtask, from 0.
    pub subtask_index: usize,
    /// Number of parallel subtasks of the operator.
    pub parallelism: usize,
    /// Number of key groups in the job.
    pub max_parallelism: u16,
    /// The key groups this subtask owns.
    pub key_group_range: KeyGroupRange,
    /// Which backend keyed state uses.
    pub state_backend: StateBackendKind,
    /// Records per batch that outputs aim for.
    pub batch_size: usize,
    /// Whether the job takes checkpoints (sinks that commit on checkpoints need them).
    pub checkpointing: bool,
    /// Identifies this run of the job (every start or restart gets a new one), e.g. to tell
    /// files of a failed attempt from the current one's.
    pub attempt: u64,
    /// The checkpoint this run restored from, if any.
    pub restored_checkpoint: Option<u64>,
}

impl TaskInfo {
    /// Info for subtask `index` of `parallelism` (key groups computed from `max_parallelism`).
    pub fn new(job_name: &str, operator_name: &str, index: usize, parallelism: usize, max_parallelism: u16) -> Self {
        TaskInfo {
            job_name: job_name.to_string(),
            operator_name: operator_name.to_string(),
            node: 0,
            subtask_index: index,
            parallelism,
            max_parallelism,
            key_group_range: KeyGroupRange::for_subtask(max_parallelism, parallelism, index),
            state_backend: StateBackendKind::Memory,
            batch_size: 1024,
            checkpointing: false,
            attempt: 0,
            restored_checkpoint: None,
        }
    }
}

impl TaskInfo {
    /// The keyed state backend of this subtask: its key groups, in the configured backend
    /// (RocksDB in a directory of its own below the configured one).
    pub fn keyed_state_backend<K: StateKey>(&self) -> crate::Result<KeyedStateBackend<K>> {
        let kind = match &self.state_backend {
            StateBackendKind::RocksDb {
                dir,
                cache_entries,
                block_cache_bytes,
            } => StateBackendKind::RocksDb {
                dir: crate::state_dir::run_dir(dir, &self.job_name, self.attempt)
                    .join(format!("{}-{}", self.node, self.subtask_index)),
                cache_entries: *cache_entries,
                block_cache_bytes: *block_cache_bytes,
            },
            StateBackendKind::Memory => StateBackendKind::Memory,
        };
        Ok(KeyedStateBackend::new(
            kind,
            self.max_parallelism,
            self.key_group_range,
        )?)
    }
}

/// What an operator sees of its task while it runs.
#[derive(Debug)]
pub struct OperatorContext {
    info: TaskInfo,
    clock: Arc<dyn Clock>,
    watermark: Timestamp,
    next_wakeup: Option<Timestamp>,
    restored: Option<StateSnapshot>,
}

impl OperatorContext {
    /// A context for the subtask described by `info`.
    pub fn new(info: TaskInfo, clock: Arc<dyn Clock>) -> Self {
        OperatorContext {
            info,
            clock,
            watermark: MIN_WATERMARK,
            next_wakeup: None,
            restored: None,
        }
    }

    /// The state this subtask restores from (in `open`), when the job was restored from a
    /// checkpoint: its key groups' keyed state and its share of the operator state.
    pub fn restored_state(&self) -> Option<&StateSnapshot> {
        self.restored.as_ref()
    }

    /// Sets the state to restore from (the runtime does this before `open`).
    pub fn set_restored_state(&mut self, snapshot: StateSnapshot) {
        self.restored = Some(snapshot);
    }

    /// Who this subtask is.
    pub fn info(&self) -> &TaskInfo {
        &self.info
    }

    /// The current processing time (ms).
    pub fn processing_time(&self) -> Timestamp {
        self.clock.now()
    }

    /// The clock processing time is read from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current event-time watermark of this operator's input.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    pub(crate) fn set_watermark(&mut self, wm: Timestamp) {
        self.watermark = wm;
    }

    /// Asks for [`Operator::on_processing_time`] to be called once processing time reaches
    /// `at`. Several requests keep the earliest; the request is spent once it fires.
    pub fn request_wakeup(&mut self, at: Timestamp) {
        self.next_wakeup = Some(self.next_wakeup.map_or(at, |w| w.min(at)));
    }

    /// The earliest requested wakeup.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.next_wakeup
    }

    /// Takes the wakeup if it is due at `now`.
    pub(crate) fn take_due_wakeup(&mut self, now: Timestamp) -> bool {
        match self.next_wakeup {
            Some(w) if w <= now => {
                self.next_wakeup = None;
                true
            }
            _ => false,
        }
    }
}

/// Where an operator sends what it produces.
pub trait Output {
    /// Emits a batch on the main output.
    fn emit(&mut self, batch: Batch) -> Result<()>;
    /// Emits a batch on the side output `tag`.
    fn emit_side(&mut self, tag: u64, batch: Batch) -> Result<()>;
    /// Emits a watermark.
    fn emit_watermark(&mut self, watermark: Timestamp) -> Result<()>;
    /// Declares the output idle (no data for a while).
    fn emit_idle(&mut self) -> Result<()>;
}

/// A streaming operator: one required method, default hooks for the rest (Flink's
/// `StreamOperator`, Arroyo's `ArrowOperator`).
pub trait Operator: Send {
    /// Called once before the first element.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Processes a batch from input `input` (0 for one-input operators).
    fn process_batch(
        &mut self,
        input: usize,
        batch: Batch,
        ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()>;

    /// Event time advanced to `watermark`: fire due timers, then forward it (the default).
    fn on_watermark(&mut self, watermark: Timestamp, _ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        out.emit_watermark(watermark)
    }

    /// All inputs went idle; the default forwards the status.
    fn on_idle(&mut self, _ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        out.emit_idle()
    }

    /// Processing time reached a wakeup requested with [`OperatorContext::request_wakeup`].
    fn on_processing_time(&mut self, _now: Timestamp, _ctx: &mut OperatorContext, _out: &mut dyn Output) -> Result<()> {
        Ok(())
    }

    /// Takes this operator's part of checkpoint `barrier.id`; called when the barrier has
    /// arrived on every input and before it is forwarded. What it returns is stored with the
    /// checkpoint and handed back through [`OperatorContext::restored_state`] on restore.
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        Ok(StateSnapshot::default())
    }

    /// Checkpoint `id` completed on every task.
    fn notify_checkpoint_complete(&mut self, _id: u64, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }

    /// All inputs ended (after the final watermark): emit what is left.
    fn finish(&mut self, _ctx: &mut OperatorContext, _out: &mut dyn Output) -> Result<()> {
        Ok(())
    }
}

/// What a source's poll reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// More records may be ready right away.
    More,
    /// Nothing now; poll again after at most this long.
    Idle(Duration),
    /// The source is exhausted.
    Finished,
}

/// A source: the head of a source task, polled for batches.
pub trait SourceFunction: Send {
    /// Called once before the first poll.
    fn open(&mut self, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Emits up to one batch on `out`.
    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus>;

    /// Records the source's position for checkpoint `barrier.id` (as operator-state items,
    /// dealt round robin when restored at another parallelism); the barrier is emitted right
    /// after.
    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        Ok(StateSnapshot::default())
    }

    /// Checkpoint `id` completed on every task.
    fn notify_checkpoint_complete(&mut self, _id: u64, _ctx: &mut OperatorContext) -> Result<()> {
        Ok(())
    }
}
