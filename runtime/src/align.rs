//! Combining the control elements of several input channels: the minimum watermark over
//! active channels (Flink's `StatusWatermarkValve`) and checkpoint barrier alignment.

use crate::element::{CheckpointBarrier, Timestamp, MAX_WATERMARK, MIN_WATERMARK};

#[derive(Clone, Copy, Debug)]
struct ChannelTime {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// What a watermark or status change on one channel does to the combined output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkUpdate {
    /// The combined watermark advanced to this timestamp.
    Advanced(Timestamp),
    /// Every channel is idle: the output goes idle.
    Idle,
    /// Nothing to emit.
    Unchanged,
}

/// Tracks each input channel's watermark and idleness; the output watermark is the minimum
/// over the channels that are neither idle nor ended, and never goes back.
///
/// ```
/// use floe_runtime::{WatermarkValve, WatermarkUpdate};
/// let mut v = WatermarkValve::new(2);
/// assert_eq!(v.on_watermark(0, 10), WatermarkUpdate::Unchanged); // channel 1 still at -inf
/// assert_eq!(v.on_watermark(1, 7), WatermarkUpdate::Advanced(7));
/// assert_eq!(v.on_idle(1), WatermarkUpdate::Advanced(10));     // idle channel 1 left out
/// ```
#[derive(Debug)]
pub struct WatermarkValve {
    channels: Vec<ChannelTime>,
    output: Timestamp,
    output_idle: bool,
}

impl WatermarkValve {
    /// A valve over `n` channels.
    pub fn new(n: usize) -> Self {
        WatermarkValve {
            channels: vec![
                ChannelTime {
                    watermark: MIN_WATERMARK,
                    idle: false,
                    ended: false,
                };
                n
            ],
            output: MIN_WATERMARK,
            output_idle: false,
        }
    }

    /// The combined watermark emitted so far.
    pub fn current(&self) -> Timestamp {
        self.output
    }

    /// Channel `c` delivered watermark `wm` (which also makes it active again).
    pub fn on_watermark(&mut self, c: usize, wm: Timestamp) -> WatermarkUpdate {
        let ch = &mut self.channels[c];
        ch.idle = false;
        if wm > ch.watermark {
            ch.watermark = wm;
        }
        self.recompute()
    }

    /// Channel `c` delivered data: it is active again.
    pub fn on_data(&mut self, c: usize) -> WatermarkUpdate {
        if self.channels[c].idle {
            self.channels[c].idle = false;
            self.output_idle = false;
            return self.recompute();
        }
        if self.output_idle {
            self.output_idle = false;
        }
        WatermarkUpdate::Unchanged
    }

    /// Channel `c` declared itself idle.
    pub fn on_idle(&mut self, c: usize) -> WatermarkUpdate {
        self.channels[c].idle = true;
        self.recompute()
    }

    /// Channel `c` ended: it holds nothing back any more.
    pub fn on_end(&mut self, c: usize) -> WatermarkUpdate {
        let ch = &mut self.channels[c];
        ch.ended = true;
        ch.watermark = MAX_WATERMARK;
        self.recompute()
    }

    fn recompute(&mut self) -> WatermarkUpdate {
        let active = self.channels.iter().filter(|c| !c.idle && !c.ended);
        match active.map(|c| c.watermark).min() {
            None if self.channels.iter().all(|c| c.ended) => self.advance(MAX_WATERMARK),
            None => {
                // All remaining channels idle: the minimum over ended and idle channels still
                // may advance (ended channels count as +inf, so only idle ones bound it).
                if self.output_idle {
                    WatermarkUpdate::Unchanged
                } else {
                    self.output_idle = true;
                    WatermarkUpdate::Idle
                }
            }
            Some(min) => {
                self.output_idle = false;
                self.advance(min)
            }
        }
    }

    fn advance(&mut self, wm: Timestamp) -> WatermarkUpdate {
        if wm > self.output {
            self.output = wm;
            WatermarkUpdate::Advanced(wm)
        } else {
            WatermarkUpdate::Unchanged
        }
    }
}

/// What a barrier (or the end of a channel) means for alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarrierOutcome {
    /// Still waiting for the barrier on other channels; the channel is now blocked.
    Waiting,
    /// The barrier has arrived on every live channel: snapshot and forward it. All
    /// channels are unblocked.
    Aligned(CheckpointBarrier),
    /// Nothing to do (an old barrier, or no alignment in progress).
    Ignored,
}

/// Aligns checkpoint barriers over a task's input channels: a channel that delivered barrier
/// `n` is blocked (its later elements belong to the next checkpoint) until every channel has
/// delivered `n`. Ended channels count as having delivered every barrier.
///
/// ```
/// use floe_runtime::{BarrierAligner, BarrierOutcome, CheckpointBarrier};
/// let b = CheckpointBarrier { id: 1, timestamp: 0, is_savepoint: false };
/// let mut a = BarrierAligner::new(2);
/// assert_eq!(a.on_barrier(1, b), BarrierOutcome::Waiting);
/// assert!(a.is_blocked(1) && !a.is_blocked(0));
/// assert_eq!(a.on_barrier(0, b), BarrierOutcome::Aligned(b));
/// assert!(!a.is_blocked(1));
/// ```
#[derive(Debug)]
pub struct BarrierAligner {
    blocked: Vec<bool>,
    ended: Vec<bool>,
    pending: Option<CheckpointBarrier>,
    last_completed: Option<u64>,
}

impl BarrierAligner {
    /// An aligner over `n` channels.
    pub fn new(n: usize) -> Self {
        BarrierAligner {
            blocked: vec![false; n],
            ended: vec![false; n],
            pending: None,
            last_completed: None,
        }
    }

    /// Whether channel `c` must not be read now.
    pub fn is_blocked(&self, c: usize) -> bool {
        self.blocked[c]
    }

    /// The checkpoint being aligned, if any.
    pub fn pending(&self) -> Option<CheckpointBarrier> {
        self.pending
    }

    /// Channel `c` delivered `barrier`.
    pub fn on_barrier(&mut self, c: usize, barrier: CheckpointBarrier) -> BarrierOutcome {
        if self.last_completed.is_some_and(|l| barrier.id <= l) {
            return BarrierOutcome::Ignored;
        }
        match self.pending {
            Some(p) if barrier.id < p.id => return BarrierOutcome::Ignored,
            Some(p) if barrier.id > p.id => {
                // A newer checkpoint overtook the pending one, which can no longer complete
                // here: abandon it and align on the newer one.
                self.blocked.iter_mut().for_each(|b| *b = false);
                self.pending = Some(barrier);
            }
            Some(_) => {}
            None => self.pending = Some(barrier),
        }
        self.blocked[c] = true;
        self.check_complete()
    }

    /// Channel `c` ended.
    pub fn on_end(&mut self, c: usize) -> BarrierOutcome {
        self.ended[c] = true;
        self.blocked[c] = false;
        if self.pending.is_some() {
            self.check_complete()
        } else {
            BarrierOutcome::Ignored
        }
    }

    fn check_complete(&mut self) -> BarrierOutcome {
        let done = self.blocked.iter().zip(&self.ended).all(|(b, e)| *b || *e);
        if !done {
            return BarrierOutcome::Waiting;
        }
        let barrier = self.pending.take().expect("complete implies pending");
        self.last_completed = Some(barrier.id);
        self.blocked.iter_mut().for_each(|b| *b = false);
        BarrierOutcome::Aligned(barrier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp: 0,
            is_savepoint: false,
        }
    }

    #[test]
    fn barriers_in_either_order_align_once() {
        for order in [[0, 1], [1, 0]] {
            let mut a = BarrierAligner::new(2);
            assert_eq!(a.on_barrier(order[0], barrier(1)), BarrierOutcome::Waiting);
            assert!(a.is_blocked(order[0]));
            assert!(!a.is_blocked(order[1]));
            assert_eq!(a.on_barrier(order[1], barrier(1)), BarrierOutcome::Aligned(barrier(1)));
            assert!(!a.is_blocked(0) && !a.is_blocked(1));
            // A duplicate of a completed barrier is ignored.
            assert_eq!(a.on_barrier(0, barrier(1)), BarrierOutcome::Ignored);
        }
    }

    #[test]
    fn ended_channel_counts_as_delivered() {
        let mut a = BarrierAligner::new(3);
        assert_eq!(a.on_barrier(0, barrier(4)), BarrierOutcome::Waiting);
        assert_eq!(a.on_end(2), BarrierOutcome::Waiting);
        assert_eq!(a.on_barrier(1, barrier(4)), BarrierOutcome::Aligned(barrier(4)));
        // With channel 2 gone, two barriers complete the next checkpoint.
        assert_eq!(a.on_barrier(1, barrier(5)), BarrierOutcome::Waiting);
        assert_eq!(a.on_barrier(0, barrier(5)), BarrierOutcome::Aligned(barrier(5)));
    }

    #[test]
    fn newer_barrier_abandons_pending_one() {
        let mut a = BarrierAligner::new(2);
        assert_eq!(a.on_barrier(0, barrier(1)), BarrierOutcome::Waiting);
        assert_eq!(a.on_barrier(1, barrier(2)), BarrierOutcome::Waiting);
        assert!(!a.is_blocked(0), "channel 0 released when checkpoint 1 was abandoned");
        assert_eq!(a.on_barrier(0, barrier(1)), BarrierOutcome::Ignored);
        assert_eq!(a.on_barrier(0, barrier(2)), BarrierOutcome::Aligned(barrier(2)));
    }

    #[test]
    fn valve_takes_minimum_of_active_channels() {
        let mut v = WatermarkValve::new(3);
        assert_eq!(v.on_watermark(0, 5), WatermarkUpdate::Unchanged);
        assert_eq!(v.on_watermark(1, 3), WatermarkUpdate::Unchanged);
        assert_eq!(v.on_watermark(2, 9), WatermarkUpdate::Advanced(3));
        // Going back on one channel never moves the output back.
        assert_eq!(v.on_watermark(1, 1), WatermarkUpdate::Unchanged);
        assert_eq!(v.on_end(1), WatermarkUpdate::Advanced(5));
        assert_eq!(v.on_idle(0), WatermarkUpdate::Advanced(9));
        assert_eq!(v.on_idle(2), WatermarkUpdate::Idle);
        assert_eq!(v.on_data(0), WatermarkUpdate::Unchanged);
        assert_eq!(v.on_watermark(0, 12), WatermarkUpdate::Advanced(12));
        assert_eq!(v.on_end(0), WatermarkUpdate::Idle, "channel 2 is idle, 0 and 1 ended");
        assert_eq!(v.on_end(2), WatermarkUpdate::Advanced(MAX_WATERMARK));
    }
}
