//! Task loops: one thread per task runs a source or an input gate into a chain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};

use crate::align::{BarrierAligner, BarrierOutcome, WatermarkUpdate, WatermarkValve};
use crate::chain::{guarded, Link, LinkOutput};
use crate::element::{CheckpointBarrier, Message, Timestamp, MAX_WATERMARK};
use crate::error::{Result, RuntimeError};
use crate::operator::{OperatorContext, Output, SourceFunction, SourceStatus};

/// Control messages from the job to source tasks.
#[derive(Debug)]
pub(crate) enum Control {
    /// Record positions and emit this barrier.
    Barrier(CheckpointBarrier),
    /// Stop reading; end the stream as if the sources were exhausted.
    Stop,
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
    pub(crate) control: Receiver<Control>,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl SourceTask {
    pub(crate) fn run(mut self) -> Result<()> {
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.open(ctx))?;
        if let Some(next) = &mut self.out.next {
            next.open()?;
        }
        let mut last_flush = self.ctx.processing_time();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(RuntimeError::Cancelled);
            }
            match self.control.try_recv() {
                Ok(Control::Barrier(b)) => {
                    self.barrier(&b)?;
                    continue;
                }
                Ok(Control::Stop) => break,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            }
            let (source, out) = (&mut self.source, &mut self.out);
            let status = guarded(&mut self.ctx, |ctx| source.poll_batch(ctx, out))?;
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
                    let wake = self.next_wakeup();
                    let wait = d.min(wait_until(now, wake));
                    match self.control.recv_timeout(wait) {
                        Ok(Control::Barrier(b)) => {
                            self.barrier(&b)?;
                        }
                        Ok(Control::Stop) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
                    }
                }
                SourceStatus::Finished => break,
            }
        }
        // Bounded input ends event time: every window and timer downstream fires.
        self.out.emit_watermark(MAX_WATERMARK)?;
        self.out.finish()
    }

    fn barrier(&mut self, b: &CheckpointBarrier) -> Result<()> {
        let source = &mut self.source;
        guarded(&mut self.ctx, |ctx| source.snapshot_state(b, ctx))?;
        self.out.on_barrier(b)
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
    pub(crate) cancel: Arc<AtomicBool>,
}

impl OperatorTask {
    pub(crate) fn run(mut self) -> Result<()> {
        self.head.open()?;
        let n = self.inputs.len();
        let mut valve = WatermarkValve::new(n);
        let mut aligner = BarrierAligner::new(n);
        let mut ended = vec![false; n];
        let mut live = n;
        let clock = self.head.ctx.clock().clone();
        while live > 0 {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(RuntimeError::Cancelled);
            }
            let now = clock.now();
            let wake = self.head.next_wakeup();
            if wake.is_some_and(|w| w <= now) {
                self.head.on_processing_time(now)?;
                continue;
            }
            // Wait on the channels that are neither ended nor blocked by alignment.
            let readable: Vec<usize> = (0..n).filter(|&c| !ended[c] && !aligner.is_blocked(c)).collect();
            let mut sel = Select::new();
            for &c in &readable {
                sel.recv(&self.inputs[c].rx);
            }
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
            let c = readable[ready];
            let msg = match self.inputs[c].rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => continue,
                Err(TryRecvError::Disconnected) => return Err(RuntimeError::Cancelled),
            };
            match msg {
                Message::Data(batch) => {
                    if let WatermarkUpdate::Advanced(wm) = valve.on_data(c) {
                        self.head.on_watermark(wm)?;
                    }
                    self.head.process(self.inputs[c].input, batch)?;
                }
                Message::Watermark(wm) => self.apply(valve.on_watermark(c, wm))?,
                Message::Idle => self.apply(valve.on_idle(c))?,
                Message::Barrier(b) => {
                    if let BarrierOutcome::Aligned(b) = aligner.on_barrier(c, b) {
                        self.head.on_barrier(&b)?;
                    }
                }
                Message::EndOfStream => {
                    ended[c] = true;
                    live -= 1;
                    if let BarrierOutcome::Aligned(b) = aligner.on_end(c) {
                        self.head.on_barrier(&b)?;
                    }
                    self.apply(valve.on_end(c))?;
                }
            }
        }
        self.head.finish()
    }

    fn apply(&mut self, update: WatermarkUpdate) -> Result<()> {
        match update {
            WatermarkUpdate::Advanced(wm) => self.head.on_watermark(wm),
            WatermarkUpdate::Idle => self.head.on_idle(),
            WatermarkUpdate::Unchanged => Ok(()),
        }
    }
}
