//! Per-partition watermarks with bounded out-of-orderness and idleness (Flink's
//! `WatermarkOutputMultiplexer` as the Kafka source uses it): each partition's watermark
//! trails its largest timestamp by the bound (minus 1 ms, as in
//! [`BoundedOutOfOrderness`](crate::timestamps::BoundedOutOfOrderness)); the subtask's is the
//! least over its partitions that are neither idle nor finished.

use floe_runtime::{Timestamp, MIN_WATERMARK};

/// What the subtask should emit after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatermarkEmit {
    /// The watermark advanced to this.
    Advance(Timestamp),
    /// No partition holds the watermark: the output is idle.
    Idle,
}

#[derive(Clone, Copy, Debug)]
struct PartitionMark {
    max_ts: Timestamp,
    last_active: Timestamp,
    finished: bool,
}

/// Tracks the watermark of each partition of a subtask and combines them.
#[derive(Debug)]
pub(crate) struct PartitionWatermarks {
    bound_ms: i64,
    idle_ms: Option<i64>,
    parts: Vec<PartitionMark>,
    emitted: Timestamp,
    idle: bool,
}

impl PartitionWatermarks {
    /// Watermarks trailing by `bound_ms` (+1); partitions without records for `idle_ms`
    /// (processing time) stop holding the watermark back.
    pub(crate) fn new(bound_ms: i64, idle_ms: Option<i64>) -> Self {
        PartitionWatermarks {
            bound_ms,
            idle_ms,
            parts: Vec::new(),
            emitted: MIN_WATERMARK,
            idle: false,
        }
    }

    /// Adds a partition (active from `now`); returns its index.
    pub(crate) fn add_partition(&mut self, now: Timestamp) -> usize {
        self.parts.push(PartitionMark {
            max_ts: MIN_WATERMARK,
            last_active: now,
            finished: false,
        });
        self.parts.len() - 1
    }

    /// Partition `p` had a record with timestamp `ts` at processing time `now`.
    pub(crate) fn on_record(&mut self, p: usize, ts: Timestamp, now: Timestamp) {
        if let Some(m) = self.parts.get_mut(p) {
            m.max_ts = m.max_ts.max(ts);
            m.last_active = now;
        }
    }

    /// Partition `p` had a record without a usable timestamp at `now`.
    pub(crate) fn on_activity(&mut self, p: usize, now: Timestamp) {
        if let Some(m) = self.parts.get_mut(p) {
            m.last_active = now;
        }
    }

    /// Whether partition `p` has been without records for the idle timeout at `now` (and
    /// would stop holding the watermark back unless it shows activity first).
    pub(crate) fn idle_due(&self, p: usize, now: Timestamp) -> bool {
        match (self.idle_ms, self.parts.get(p)) {
            (Some(i), Some(m)) => !m.finished && now.saturating_sub(m.last_active) >= i,
            _ => false,
        }
    }

    /// Partition `p` has no more records (bounded reading): it no longer holds the watermark.
    pub(crate) fn finish(&mut self, p: usize) {
        if let Some(m) = self.parts.get_mut(p) {
            m.finished = true;
        }
    }

    /// The least watermark over partitions that are active at `now`; `None` when none is.
    pub(crate) fn combined(&self, now: Timestamp) -> Option<Timestamp> {
        self.parts
            .iter()
            .filter(|m| !m.finished && self.idle_ms.is_none_or(|i| now.saturating_sub(m.last_active) < i))
            .map(|m| {
                if m.max_ts == MIN_WATERMARK {
                    MIN_WATERMARK
                } else {
                    m.max_ts.saturating_sub(self.bound_ms).saturating_sub(1)
                }
            })
            .min()
    }

    /// What to emit at `now`: a watermark only when it advanced, idleness only when it
    /// begins.
    pub(crate) fn update(&mut self, now: Timestamp) -> Option<WatermarkEmit> {
        match self.combined(now) {
            None => {
                if self.idle {
                    None
                } else {
                    self.idle = true;
                    Some(WatermarkEmit::Idle)
                }
            }
            Some(wm) => {
                self.idle = false;
                if wm > self.emitted {
                    self.emitted = wm;
                    Some(WatermarkEmit::Advance(wm))
                } else {
                    None
                }
            }
        }
    }

    /// The last watermark emitted.
    #[cfg(test)]
    pub(crate) fn emitted(&self) -> Timestamp {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn minimum_over_partitions_and_idle_ones_excluded() {
        let mut w = PartitionWatermarks::new(10, Some(100));
        let (a, b) = (w.add_partition(0), w.add_partition(0));
        w.on_record(a, 1_000, 5);
        assert_eq!(w.update(5), None, "b has no record yet and holds the watermark");
        w.on_record(b, 500, 6);
        assert_eq!(w.update(6), Some(WatermarkEmit::Advance(489)));
        w.on_record(b, 400, 7);
        assert_eq!(w.update(7), None, "no regression");
        w.on_record(a, 2_000, 80);
        assert_eq!(w.update(106), None, "b is not idle yet");
        let excluded = w.update(107);
        assert_eq!(
            excluded,
            Some(WatermarkEmit::Advance(1_989)),
            "b idle 100 ms after its last record"
        );
        assert_eq!(w.update(200), Some(WatermarkEmit::Idle), "a idle too");
        assert_eq!(w.update(300), None, "idleness announced once");
        w.on_record(b, 600, 301);
        assert_eq!(w.update(301), None, "active again, but behind the emitted watermark");
        w.on_record(b, 3_000, 302);
        assert_eq!(w.update(302), Some(WatermarkEmit::Advance(2_989)));
        w.finish(b);
        assert_eq!(w.update(303), Some(WatermarkEmit::Idle));
    }

    #[test]
    fn idle_due_after_the_timeout_and_activity_holds_it_off() {
        let mut w = PartitionWatermarks::new(0, Some(100));
        let (a, b) = (w.add_partition(0), w.add_partition(0));
        w.on_record(a, 1_000, 0);
        w.on_record(b, 500, 0);
        assert!(!w.idle_due(a, 99) && w.idle_due(a, 100));
        // Records waiting at the broker count as activity: b keeps holding the watermark.
        w.on_activity(b, 100);
        assert!(!w.idle_due(b, 100));
        assert_eq!(w.update(100), Some(WatermarkEmit::Advance(499)), "b's, not a's");
        w.finish(a);
        assert!(!w.idle_due(a, 1_000), "a finished partition is not idle, it is done");
        assert!(
            !PartitionWatermarks::new(0, None).idle_due(0, 1_000),
            "no timeout, no idleness"
        );
    }

    #[test]
    fn without_partitions_the_subtask_is_idle() {
        let mut w = PartitionWatermarks::new(0, None);
        assert_eq!(w.update(0), Some(WatermarkEmit::Idle));
        let p = w.add_partition(0);
        w.on_record(p, 10, 1);
        assert_eq!(w.update(1), Some(WatermarkEmit::Advance(9)));
        assert_eq!(w.emitted(), 9);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record { p: usize, ts: i64, dt: i64 },
        Tick { dt: i64 },
    }

    fn op(parts: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..parts, 0i64..1_000, 0i64..30).prop_map(|(p, ts, dt)| Op::Record { p, ts, dt }),
            (0i64..60).prop_map(|dt| Op::Tick { dt }),
        ]
    }

    proptest! {
        /// Against an oracle that recomputes everything from the history: the emitted
        /// watermarks are exactly the rises of min over active partitions of
        /// (max timestamp - bound - 1), and idleness is announced when no partition is active.
        #[test]
        fn matches_the_min_over_active_partitions_oracle(
            parts in 1usize..5,
            bound in 0i64..50,
            idle in 1i64..80,
            ops in proptest::collection::vec(op(4), 1..80),
        ) {
            let mut w = PartitionWatermarks::new(bound, Some(idle));
            for _ in 0..parts {
                w.add_partition(0);
            }
            let mut history: Vec<(usize, i64, i64)> = Vec::new(); // (partition, ts, at)
            let (mut now, mut emitted, mut idle_now) = (0i64, MIN_WATERMARK, false);
            for op in ops {
                match op {
                    Op::Record { p, ts, dt } => {
                        now += dt;
                        let p = p % parts;
                        history.push((p, ts, now));
                        w.on_record(p, ts, now);
                    }
                    Op::Tick { dt } => now += dt,
                }
                let oracle = (0..parts)
                    .filter_map(|p| {
                        let mine: Vec<&(usize, i64, i64)> = history.iter().filter(|h| h.0 == p).collect();
                        let last = mine.iter().map(|h| h.2).max().unwrap_or(0);
                        if now - last >= idle {
                            return None;
                        }
                        Some(mine.iter().map(|h| h.1 - bound - 1).max().unwrap_or(MIN_WATERMARK))
                    })
                    .min();
                let expected = match oracle {
                    None if !idle_now => {
                        idle_now = true;
                        Some(WatermarkEmit::Idle)
                    }
                    None => None,
                    Some(m) => {
                        idle_now = false;
                        if m > emitted {
                            emitted = m;
                            Some(WatermarkEmit::Advance(m))
                        } else {
                            None
                        }
                    }
                };
                prop_assert_eq!(w.update(now), expected);
            }
        }
    }
}
