//! Operator chains: operators of one task that call each other directly, with no channel.

use std::sync::Arc;

use floe_checkpoints::StateSnapshot;

use crate::element::{Batch, CheckpointBarrier, Message, Timestamp};
use crate::error::{Result, RuntimeError};
use crate::metrics::operators::{register, SubtaskHandle};
use crate::metrics::BackPressure;
use crate::operator::{Operator, OperatorContext, Output, TaskInfo};
use crate::route::EdgeWriter;

/// Where one operator's output goes: the next chained operator and/or edge writers.
#[derive(Default)]
pub(crate) struct LinkOutput {
    pub(crate) next: Option<Box<Link>>,
    pub(crate) main: Vec<Box<dyn EdgeWriter>>,
    pub(crate) side: Vec<(u64, Vec<Box<dyn EdgeWriter>>)>,
    /// This link's operator metrics, once [`LinkOutput::attach_metrics`] ran.
    pub(crate) metrics: Option<SubtaskHandle>,
}

fn fan_out(writers: &mut [Box<dyn EdgeWriter>], batch: Batch) -> Result<()> {
    if let Some((last, rest)) = writers.split_last_mut() {
        for w in rest {
            w.write(batch.clone_batch())?;
        }
        last.write(batch)?;
    }
    Ok(())
}

impl LinkOutput {
    /// Registers the metrics of the operator `info` this output belongs to and of every
    /// chained successor, all reporting blocked sends to one `pressure` (the task's); the
    /// head of a source task passes `source` (its watermark is the one it emits).
    pub(crate) fn attach_metrics(&mut self, info: &TaskInfo, pressure: &Arc<BackPressure>, source: bool) {
        self.metrics = Some(register(info, pressure.clone(), source));
        for w in self.writers() {
            w.set_back_pressure(pressure.clone());
        }
        if let Some(next) = &mut self.next {
            let Link { ctx, out, .. } = &mut **next;
            out.attach_metrics(ctx.info(), pressure, false);
        }
    }

    /// Lets the task's backpressure window roll on (cheap; call once per loop).
    pub(crate) fn tick_metrics(&self) {
        if let Some(m) = &self.metrics {
            m.pressure().tick();
        }
    }

    fn count_out(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.records_out(n);
        }
    }

    fn writers(&mut self) -> impl Iterator<Item = &mut Box<dyn EdgeWriter>> {
        self.main
            .iter_mut()
            .chain(self.side.iter_mut().flat_map(|(_, ws)| ws.iter_mut()))
    }

    /// Sends a control message on every edge of this link (not the chained successor).
    pub(crate) fn broadcast(&mut self, make: &dyn Fn() -> Message) -> Result<()> {
        for w in self.writers() {
            w.broadcast(make)?;
        }
        Ok(())
    }

    /// Flushes the edges of this link and of every chained successor.
    pub(crate) fn flush(&mut self) -> Result<()> {
        for w in self.writers() {
            w.flush()?;
        }
        if let Some(next) = &mut self.next {
            next.out.flush()?;
        }
        Ok(())
    }

    /// Processing time reached `now`: wake the chained successors that asked for it.
    pub(crate) fn on_processing_time(&mut self, now: Timestamp) -> Result<()> {
        match &mut self.next {
            Some(next) => next.on_processing_time(now),
            None => Ok(()),
        }
    }

    /// The earliest wakeup any chained successor asked for.
    pub(crate) fn next_wakeup(&self) -> Option<Timestamp> {
        self.next.as_ref().and_then(|n| n.next_wakeup())
    }

    /// Snapshots the chained successors into `acc` and forwards the barrier on every edge.
    pub(crate) fn on_barrier(&mut self, barrier: &CheckpointBarrier, acc: &mut Vec<TaskSnapshot>) -> Result<()> {
        let b = *barrier;
        self.broadcast(&move || Message::Barrier(b))?;
        match &mut self.next {
            Some(next) => next.on_barrier(barrier, acc),
            None => Ok(()),
        }
    }

    /// Tells the chained successors that checkpoint `id` completed.
    pub(crate) fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        match &mut self.next {
            Some(next) => next.notify_checkpoint_complete(id),
            None => Ok(()),
        }
    }

    /// End of data: finish the chained successors (they emit what they hold), then announce
    /// it on every edge.
    pub(crate) fn end_of_data(&mut self) -> Result<()> {
        if let Some(next) = &mut self.next {
            next.end_of_data()?;
        }
        self.broadcast(&|| Message::EndOfData)
    }

    /// End of stream on every edge of this link and its successors.
    pub(crate) fn end_of_stream(&mut self) -> Result<()> {
        if let Some(next) = &mut self.next {
            next.out.end_of_stream()?;
        }
        self.broadcast(&|| Message::EndOfStream)
    }
}

/// One subtask's part of a checkpoint: (node, subtask, state).
pub(crate) type TaskSnapshot = (usize, usize, StateSnapshot);

impl Output for LinkOutput {
    fn emit(&mut self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.count_out(batch.len());
        match &mut self.next {
            Some(next) => next.process(0, batch),
            None => fan_out(&mut self.main, batch),
        }
    }

    fn emit_side(&mut self, tag: u64, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.count_out(batch.len());
        match self.side.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, ws)) => fan_out(ws, batch),
            // A side output nobody consumes: the DSL logs what it drops where that matters.
            None => Ok(()),
        }
    }

    fn emit_watermark(&mut self, wm: Timestamp) -> Result<()> {
        if let Some(m) = &self.metrics {
            m.emitted_watermark(wm);
        }
        self.broadcast(&move || Message::Watermark(wm))?;
        match &mut self.next {
            Some(next) => next.on_watermark(wm),
            None => Ok(()),
        }
    }

    fn emit_idle(&mut self) -> Result<()> {
        self.broadcast(&|| Message::Idle)?;
        match &mut self.next {
            Some(next) => next.on_idle(),
            None => Ok(()),
        }
    }
}

/// One operator of a chain, with its context and its output.
pub(crate) struct Link {
    pub(crate) op: Box<dyn Operator>,
    pub(crate) ctx: OperatorContext,
    pub(crate) out: LinkOutput,
}

/// Names the operator and subtask in an error, unless an inner link already did.
pub(crate) fn attribute(ctx: &OperatorContext, e: RuntimeError) -> RuntimeError {
    match e {
        e @ RuntimeError::Task { .. } => e,
        e @ RuntimeError::Cancelled => e,
        e => {
            let info = ctx.info();
            RuntimeError::Task {
                operator: info.operator_name.clone(),
                subtask: info.subtask_index + 1,
                parallelism: info.parallelism,
                source: Box::new(e),
            }
        }
    }
}

/// Runs an operator call, turning an error or a panic into one that names the operator.
pub(crate) fn guarded<R>(ctx: &mut OperatorContext, f: impl FnOnce(&mut OperatorContext) -> Result<R>) -> Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(ctx))) {
        Ok(r) => r.map_err(|e| attribute(ctx, e)),
        Err(payload) => Err(attribute(ctx, RuntimeError::Panic(panic_message(payload.as_ref())))),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

impl Link {
    pub(crate) fn open(&mut self) -> Result<()> {
        let op = &mut self.op;
        guarded(&mut self.ctx, |ctx| op.open(ctx))?;
        match &mut self.out.next {
            Some(next) => next.open(),
            None => Ok(()),
        }
    }

    pub(crate) fn process(&mut self, input: usize, batch: Batch) -> Result<()> {
        if let Some(m) = &self.out.metrics {
            m.records_in(batch.len());
        }
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.process_batch(input, batch, ctx, out))
    }

    pub(crate) fn on_watermark(&mut self, wm: Timestamp) -> Result<()> {
        self.ctx.set_watermark(wm);
        if let Some(m) = &self.out.metrics {
            m.watermark(wm);
        }
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.on_watermark(wm, ctx, out))
    }

    pub(crate) fn on_idle(&mut self) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.on_idle(ctx, out))
    }

    pub(crate) fn on_processing_time(&mut self, now: Timestamp) -> Result<()> {
        if self.ctx.take_due_wakeup(now) {
            let (op, out) = (&mut self.op, &mut self.out);
            guarded(&mut self.ctx, |ctx| op.on_processing_time(now, ctx, out))?;
        }
        self.out.on_processing_time(now)
    }

    pub(crate) fn next_wakeup(&self) -> Option<Timestamp> {
        match (self.ctx.next_wakeup(), self.out.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn on_barrier(&mut self, barrier: &CheckpointBarrier, acc: &mut Vec<TaskSnapshot>) -> Result<()> {
        let op = &mut self.op;
        let snapshot = guarded(&mut self.ctx, |ctx| op.snapshot_state(barrier, ctx))?;
        let info = self.ctx.info();
        acc.push((info.node, info.subtask_index, snapshot));
        self.out.on_barrier(barrier, acc)
    }

    pub(crate) fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
        let op = &mut self.op;
        guarded(&mut self.ctx, |ctx| op.notify_checkpoint_complete(id, ctx))?;
        self.out.notify_checkpoint_complete(id)
    }

    /// All inputs ended their data: the operator emits what it holds.
    pub(crate) fn end_of_data(&mut self) -> Result<()> {
        let (op, out) = (&mut self.op, &mut self.out);
        guarded(&mut self.ctx, |ctx| op.finish(ctx, out))?;
        self.out.end_of_data()
    }
}
