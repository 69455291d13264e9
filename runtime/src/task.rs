//! Task loops: one thread per task runs a source or an input gate into a chain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TryRecvError};

use crate::align::{BarrierAligner, BarrierOutcome, WatermarkUpdate, WatermarkValve};
use crate::chain::{guarded, Link, LinkOutput, TaskSnapshot};
use crate::element::{CheckpointBarrier, Message, Timestamp, MAX_WATERMARK};
use crate::error::{Result, RuntimeError};
use crate::metrics::BackPressure;
use crate::operator::{OperatorContext, Output, SourceFunction, SourceStatus};

/// Control messages from the job to tasks (also sent from worker 0 to the other workers).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum Control {
    /// Sources: record positions and emit this barrier.
    Barrier(CheckpointBarrier),
    /// Sources: stop reading; end the stream as if the input were exhausted.
    Stop,
    /// Checkpoint `id` completed on every task.
    CheckpointComplete(u64),
    /// The job stopped with a savepoint: end now, without ending the stream.
    Terminate,
}

/// What tasks tell the checkpoint coordinator.
#[derive(Debug)]
pub(crate) enum Report {
    /// Task `task` took its part of checkpoint `id`.
    Ack {
        id: u64,
        task: usize,
        states: Vec<TaskSnapshot>,
    },
    /// Source task `task` has no more data; it waits for a final checkpoint.
    SourceEnded { task: usize },
    /// Task `task` ended; its last acknowledged state stands for later checkpoints.
    Finished { task: usize },
    /// Task `task` of another worker took its part of checkpoint `id`, and that worker
    /// wrote its state already.
    AckWritten {
        id: u64,
        task: usize,
        files: Vec<floe_checkpoints::StateFile>,
    },
}

/// What every task shares with the job.
pub(crate) struct TaskLink {
    pub(crate) id: usize,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) control: Receiver<Control>,
    /// Present when the job takes checkpoints.
    pub(crate) reports: Option<Sender<Report>>,
}

impl TaskLink {
    /// Tells the coordinator this task ended normally.
    pub(crate) fn finished(&self) {
        if let Some(r) = &self.reports {
            let _ = r.send(Report::Finished { task: self.id });
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn ack(&self, id: u64, states: Vec<TaskSnapshot>) -> Result<()> {
        if let Some(r) = &self.reports {
            r.send(Report::Ack {
                id,
                task: self.id,
                states,
            })
            .map_err(|_| RuntimeError::Cancelled)?;
        }
        Ok(())
    }
}

/// How long a task waits at most before looking at the cancel flag again.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How long a source may hold records in partly filled output batches.
const SOURCE_LINGER_MS: i64 = 5;

fn wait_until(ctx_now: Timestamp, wakeup: Option<Timestamp>) -> Duration {
    match wakeup {
        Some(w) if w <= ctx_now => Duration::ZERO,
        Some(w) => Duration::from_millis((w - ctx_now) as u64).min(CANCEL_POLL),
        None => CANCEL_POLL,
    }
}

/// A source task: the source, then its chain.
pub(crate) struct SourceTask {
    pub(crate) source: Box<dyn SourceFunction>,
    pub(crate) ctx: OperatorContext,
    pub(crate) out: LinkOutput,
    pub(crate) link: TaskLink,
}

/// What a source task does after a control message.
enum Next {
    Continue,
    Stop,
}

impl SourceTask {
    pub(crate) fn run(mut self) -> Result<()> {
        let r = self.run_to_end();
        if r.as_ref().is_err_and(|e| e.is_cancellation()) {
            // Checkpoints that completed before the end are still committed.
            while let Ok(c) = self.link.control.try_recv() {
                if let Control::CheckpointComplete(id) = c {
                    let _ = self.notify(id);
                }
            }
        }
        r
    }

    fn run_to_end(&mut self) -> Result<()> {
        self.out
            .attach_metrics(self.ctx.info(), &Arc::new(BackPressure::new()), true);
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.open(ctx))?;
        if let Some(next) = &mut self.out.next {
            next.open()?;
        }
        let mut last_flush = self.ctx.processing_time();
        loop {
            if self.link.cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            match self.link.control.try_recv() {
                Ok(c) => match self.control(c)? {
                    Next::Continue => continue,
                    Next::Stop => break,
                },
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            }
            let (source, out) = (&mut self.source, &mut self.out);
            let status = guarded(&mut self.ctx, |ctx| source.poll_batch(ctx, out))?;
            self.out.tick_metrics();
            let now = self.ctx.processing_time();
            self.wake_due(now)?;
            match status {
                SourceStatus::More => {
                    if now - last_flush >= SOURCE_LINGER_MS {
                        self.out.flush()?;
                        last_flush = now;
                    }
                }
                SourceStatus::Idle(d) => {
                    self.out.flush()?;
                    last_flush = now;
                    let wait = d.min(wait_until(now, self.next_wakeup()));
                    match self.link.control.recv_timeout(wait) {
                        Ok(c) => {
                            if let Next::Stop = self.control(c)? {
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
                    }
                }
                SourceStatus::Finished => break,
            }
        }
        // Bounded input ends event time: every window and timer downstream fires.
        self.out.emit_watermark(MAX_WATERMARK)?;
        self.out.end_of_data()?;
        self.final_checkpoint()?;
        self.out.end_of_stream()?;
        self.link.finished();
        Ok(())
    }

    /// With checkpoints on, a finished source stays until a checkpoint taken after the end
    /// of its data completes, so that what the job wrote last is committed too.
    fn final_checkpoint(&mut self) -> Result<()> {
        let Some(reports) = &self.link.reports else {
            return Ok(());
        };
        reports
            .send(Report::SourceEnded { task: self.link.id })
            .map_err(|_| RuntimeError::Cancelled)?;
        let mut final_barrier = None;
        loop {
            if self.link.cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            match self.link.control.recv_timeout(CANCEL_POLL) {
                Ok(Control::Barrier(b)) => {
                    self.barrier(&b)?;
                    final_barrier = Some(b.id);
                }
                Ok(Control::CheckpointComplete(id)) => {
                    self.notify(id)?;
                    if final_barrier.is_some_and(|f| id >= f) {
                        return Ok(());
                    }
                }
                Ok(Control::Terminate) => return Err(RuntimeError::Cancelled),
                Ok(Control::Stop) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(RuntimeError::Cancelled),
            }
        }
    }

    fn control(&mut self, c: Control) -> Result<Next> {
        match c {
            Control::Barrier(b) => self.barrier(&b)?,
            Control::CheckpointComplete(id) => self.notify(id)?,
            Control::Stop => return Ok(Next::Stop),
            Control::Terminate => return Err(RuntimeError::Cancelled),
        }
        Ok(Next::Continue)
    }

    fn barrier(&mut self, b: &CheckpointBarrier) -> Result<()> {
        floe_failpoints::failpoint!("checkpoint.barrier-received");
        floe_failpoints::failpoint!("checkpoint.before-snapshot");
        let source = &mut self.source;
        let snapshot = guarded(&mut self.ctx, |ctx| source.snapshot_state(b, ctx))?;
        let info = self.ctx.info();
        let mut states = vec![(info.node, info.subtask_index, snapshot)];
        self.out.on_barrier(b, &mut states)?;
        floe_failpoints::failpoint!("checkpoint.after-snapshot");
        self.link.ack(b.id, states)
    }

    fn notify(&mut self, id: u64) -> Result<()> {
        floe_failpoints::failpoint!("task.before-notify");
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.notify_checkpoint_complete(id, ctx))?;
        self.out.notify_checkpoint_complete(id)?;
        floe_failpoints::failpoint!("task.after-notify");
        Ok(())
    }

    fn next_wakeup(&self) -> Option<Timestamp> {
        match (self.ctx.next_wakeup(), self.out.next_wakeup()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn wake_due(&mut self, now: Timestamp) -> Result<()> {
        if self.next_wakeup().is_some_and(|w| w <= now) {
            self.ctx.take_due_wakeup(now);
            self.out.on_processing_time(now)?;
        }
        Ok(())
    }
}

/// One input channel of a task.
pub(crate) struct InputChannel {
    pub(crate) rx: Receiver<Message>,
    pub(crate) input: usize,
}

/// An operator task: input channels, then the chain.
pub(crate) struct OperatorTask {
    pub(crate) inputs: Vec<InputChannel>,
    pub(crate) head: Link,
    pub(crate) link: TaskLink,
}

/// Per-channel progress of an operator task's input.
struct Gate {
    valve: WatermarkValve,
    aligner: BarrierAligner,
    data_ended: Vec<bool>,
    ended: Vec<bool>,
}

impl OperatorTask {
    pub(crate) fn run(mut self) -> Result<()> {
        let r = self.run_to_end();
        if r.as_ref().is_err_and(|e| e.is_cancellation()) {
            // Checkpoints that completed before the end are still committed.
            while let Ok(c) = self.link.control.try_recv() {
                if let Control::CheckpointComplete(id) = c {
                    let _ = self.head.notify_checkpoint_complete(id);
                }
            }
        }
        r
    }

    fn run_to_end(&mut self) -> Result<()> {
        let Link { ctx, out, .. } = &mut self.head;
        out.attach_metrics(ctx.info(), &Arc::new(BackPressure::new()), false);
        self.head.open()?;
        let n = self.inputs.len();
        let mut gate = Gate {
            valve: WatermarkValve::new(n),
            aligner: BarrierAligner::new(n),
            data_ended: vec![false; n],
            ended: vec![false; n],
        };
        let mut finished = false;
        let mut last_acked: Option<u64> = None;
        let mut last_notified: Option<u64> = None;
        let mut control_open = true;
        let clock = self.head.ctx.clock().clone();
        loop {
            if self.link.cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            self.head.out.tick_metrics();
            let all_ended = gate.ended.iter().all(|e| *e);
            if all_ended {
                // Stay for the notification of the last checkpoint this task took part in,
                // so that sinks commit what they wrote last.
                let waiting =
                    self.link.reports.is_some() && last_acked.is_some_and(|a| last_notified.is_none_or(|n| n < a));
                if !waiting {
                    break;
                }
            }
            let now = clock.now();
            let wake = self.head.next_wakeup();
            if wake.is_some_and(|w| w <= now) {
                self.head.on_processing_time(now)?;
                continue;
            }
            // Wait on the control channel and the input channels that are neither ended nor
            // blocked by alignment.
            let readable: Vec<usize> = (0..n)
                .filter(|&c| !gate.ended[c] && !gate.aligner.is_blocked(c))
                .collect();
            let mut sel = Select::new();
            for &c in &readable {
                sel.recv(&self.inputs[c].rx);
            }
            let control_index = if control_open {
                sel.recv(&self.link.control)
            } else {
                usize::MAX
            };
            let ready = match sel.try_ready() {
                Ok(i) => i,
                Err(_) => {
                    // Nothing waiting: ship partly filled batches before blocking.
                    self.head.out.flush()?;
                    match sel.ready_timeout(wait_until(now, wake)) {
                        Ok(i) => i,
                        Err(_) => continue,
                    }
                }
            };
            if ready == control_index {
                match self.link.control.try_recv() {
                    Ok(Control::CheckpointComplete(id)) => {
                        floe_failpoints::failpoint!("task.before-notify");
                        self.head.notify_checkpoint_complete(id)?;
                        floe_failpoints::failpoint!("task.after-notify");
                        last_notified = Some(id);
                    }
                    Ok(Control::Terminate) => return Err(RuntimeError::Cancelled),
                    Ok(_) | Err(TryRecvError::Empty) => {}
                    // The job handle is gone: no more notifications, the data goes on.
                    Err(TryRecvError::Disconnected) => control_open = false,
                }
                continue;
            }
            let c = readable[ready];
            let msg = match self.inputs[c].rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => continue,
                Err(TryRecvError::Disconnected) => return Err(RuntimeError::Cancelled),
            };
            match msg {
                Message::Data(batch) => {
                    if let WatermarkUpdate::Advanced(wm) = gate.valve.on_data(c) {
                        self.head.on_watermark(wm)?;
                    }
                    self.head.process(self.inputs[c].input, batch)?;
                }
                Message::Watermark(wm) => self.apply(gate.valve.on_watermark(c, wm))?,
                Message::Idle => self.apply(gate.valve.on_idle(c))?,
                Message::Barrier(b) => {
                    floe_failpoints::failpoint!("checkpoint.barrier-received");
                    if let BarrierOutcome::Aligned(b) = gate.aligner.on_barrier(c, b) {
                        self.checkpoint(&b)?;
                        last_acked = Some(b.id);
                    }
                }
                Message::EndOfData => {
                    gate.data_ended[c] = true;
                    self.maybe_finish(&gate, &mut finished)?;
                }
                Message::EndOfStream => {
                    gate.ended[c] = true;
                    gate.data_ended[c] = true;
                    if let BarrierOutcome::Aligned(b) = gate.aligner.on_end(c) {
                        self.checkpoint(&b)?;
                        last_acked = Some(b.id);
                    }
                    self.apply(gate.valve.on_end(c))?;
                    self.maybe_finish(&gate, &mut finished)?;
                }
            }
        }
        self.head.out.end_of_stream()?;
        self.link.finished();
        Ok(())
    }

    fn maybe_finish(&mut self, gate: &Gate, finished: &mut bool) -> Result<()> {
        if !*finished && gate.data_ended.iter().all(|e| *e) {
            *finished = true;
            self.head.end_of_data()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, b: &CheckpointBarrier) -> Result<()> {
        floe_failpoints::failpoint!("checkpoint.before-snapshot");
        let mut states = Vec::new();
        self.head.on_barrier(b, &mut states)?;
        floe_failpoints::failpoint!("checkpoint.after-snapshot");
        self.link.ack(b.id, states)
    }

    fn apply(&mut self, update: WatermarkUpdate) -> Result<()> {
        match update {
            WatermarkUpdate::Advanced(wm) => self.head.on_watermark(wm),
            WatermarkUpdate::Idle => self.head.on_idle(),
            WatermarkUpdate::Unchanged => Ok(()),
        }
    }
}
