//! A test harness that drives one operator by hand: batches, watermarks and processing time
//! go in, outputs are collected. Operator tests use it instead of threads and sleeps (Flink's
//! `OneInputStreamOperatorTestHarness`).

use std::sync::Arc;

use crate::element::{downcast_batch, Batch, CheckpointBarrier, Record, Timestamp};
use crate::error::Result;
use crate::operator::{Operator, OperatorContext, Output, TaskInfo};
use crate::time::ManualClock;

/// Everything an operator (or a source driven by hand) emitted.
#[derive(Default)]
pub struct CollectedOutput {
    /// Batches of the main output.
    pub main: Vec<Batch>,
    /// Batches of side outputs, with their tags.
    pub side: Vec<(u64, Batch)>,
    /// Watermarks, in order.
    pub watermarks: Vec<Timestamp>,
    /// How often the output was declared idle.
    pub idle: usize,
}

impl Output for CollectedOutput {
    fn emit(&mut self, batch: Batch) -> Result<()> {
        self.main.push(batch);
        Ok(())
    }

    fn emit_side(&mut self, tag: u64, batch: Batch) -> Result<()> {
        self.side.push((tag, batch));
        Ok(())
    }

    fn emit_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.watermarks.push(watermark);
        Ok(())
    }

    fn emit_idle(&mut self) -> Result<()> {
        self.idle += 1;
        Ok(())
    }
}

/// Drives one operator.
///
/// ```
/// use floe_runtime::harness::OperatorHarness;
/// use floe_runtime::{downcast_batch, Batch, Operator, OperatorContext, Output, Record, Result, TaskInfo};
///
/// struct Double;
/// impl Operator for Double {
///     fn process_batch(&mut self, _: usize, b: Batch, _: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
///         let v: Vec<Record<i32>> = downcast_batch(b)?;
///         out.emit(Box::new(v.into_iter().map(|r| Record::new(r.value * 2, r.timestamp)).collect::<Vec<_>>()))
///     }
/// }
/// let mut h = OperatorHarness::new(Box::new(Double), TaskInfo::new("job", "double", 0, 1, 128), 0).unwrap();
/// h.process(vec![Record::new(1, 10), Record::new(2, 20)]).unwrap();
/// assert_eq!(h.take_values::<i32>().unwrap(), vec![2, 4]);
/// ```
pub struct OperatorHarness {
    op: Box<dyn Operator>,
    ctx: OperatorContext,
    out: CollectedOutput,
    clock: ManualClock,
}

impl OperatorHarness {
    /// Opens `op` as the subtask described by `info`, with processing time at `start`.
    pub fn new(op: Box<dyn Operator>, info: TaskInfo, start: Timestamp) -> Result<Self> {
        Self::restored(op, info, start, None)
    }

    /// Like [`new`](Self::new), restoring the operator from `snapshot`.
    pub fn restored(
        mut op: Box<dyn Operator>,
        info: TaskInfo,
        start: Timestamp,
        snapshot: Option<floe_checkpoints::StateSnapshot>,
    ) -> Result<Self> {
        let clock = ManualClock::new(start);
        let mut ctx = OperatorContext::new(info, Arc::new(clock.clone()));
        if let Some(s) = snapshot {
            ctx.set_restored_state(s);
        }
        op.open(&mut ctx)?;
        Ok(OperatorHarness {
            op,
            ctx,
            out: CollectedOutput::default(),
            clock,
        })
    }

    /// Feeds records on input 0.
    pub fn process<T: Clone + Send + 'static>(&mut self, records: Vec<Record<T>>) -> Result<()> {
        self.process_input(0, records)
    }

    /// Feeds records on input `input`.
    pub fn process_input<T: Clone + Send + 'static>(&mut self, input: usize, records: Vec<Record<T>>) -> Result<()> {
        self.op
            .process_batch(input, Box::new(records), &mut self.ctx, &mut self.out)
    }

    /// Advances event time.
    pub fn watermark(&mut self, wm: Timestamp) -> Result<()> {
        self.ctx.set_watermark(wm);
        self.op.on_watermark(wm, &mut self.ctx, &mut self.out)
    }

    /// Sets processing time and fires the wakeups that became due.
    pub fn set_processing_time(&mut self, t: Timestamp) -> Result<()> {
        self.clock.set(t);
        while self.ctx.take_due_wakeup(t) {
            self.op.on_processing_time(t, &mut self.ctx, &mut self.out)?;
        }
        Ok(())
    }

    /// Delivers a checkpoint barrier; returns what the operator snapshotted.
    pub fn snapshot(&mut self, id: u64) -> Result<floe_checkpoints::StateSnapshot> {
        let b = CheckpointBarrier {
            id,
            timestamp: self.clock_now(),
            is_savepoint: false,
        };
        self.op.snapshot_state(&b, &mut self.ctx)
    }

    fn clock_now(&self) -> Timestamp {
        use crate::time::Clock;
        self.clock.now()
    }

    /// Tells the operator that checkpoint `id` completed.
    pub fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        self.op.notify_checkpoint_complete(id, &mut self.ctx)
    }

    /// Ends the input.
    pub fn finish(&mut self) -> Result<()> {
        self.op.finish(&mut self.ctx, &mut self.out)
    }

    /// The main-output records emitted since the last take.
    pub fn take_output<T: Clone + Send + 'static>(&mut self) -> Result<Vec<Record<T>>> {
        let mut all = Vec::new();
        for b in self.out.main.drain(..) {
            all.extend(downcast_batch::<T>(b)?);
        }
        Ok(all)
    }

    /// The main-output values emitted since the last take.
    pub fn take_values<T: Clone + Send + 'static>(&mut self) -> Result<Vec<T>> {
        Ok(self.take_output::<T>()?.into_iter().map(|r| r.value).collect())
    }

    /// The records emitted on side output `tag` since the last take.
    pub fn take_side<T: Clone + Send + 'static>(&mut self, tag: u64) -> Result<Vec<Record<T>>> {
        let mut all = Vec::new();
        let mut keep = Vec::new();
        for (t, b) in self.out.side.drain(..) {
            if t == tag {
                all.extend(downcast_batch::<T>(b)?);
            } else {
                keep.push((t, b));
            }
        }
        self.out.side = keep;
        Ok(all)
    }

    /// The watermarks emitted since the last take.
    pub fn take_watermarks(&mut self) -> Vec<Timestamp> {
        std::mem::take(&mut self.out.watermarks)
    }

    /// How many times the operator declared its output idle since the last take.
    pub fn take_idle_count(&mut self) -> usize {
        std::mem::take(&mut self.out.idle)
    }

    /// The operator's context (to inspect or to request wakeups).
    pub fn context(&mut self) -> &mut OperatorContext {
        &mut self.ctx
    }
}
