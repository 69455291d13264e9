//! A deterministic generator source.

use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::StateSnapshot;
use floe_runtime::{
    CheckpointBarrier, Data, OperatorContext, Output, Record, Result, RuntimeError, SourceFunction, SourceStatus,
};

use super::sequences::Sequences;

/// Emits `f(i)` for `i` in `0..count` (or forever): subtask `s` of `p` emits `s, s + p, ...`,
/// so the union over the subtasks is exactly `0..count` at any parallelism. Without a rate it
/// runs as fast as it can; with one, each subtask emits `rate / p` records per second.
///
/// ```
/// use floe_operators::source::generator::GeneratorSource;
/// use std::sync::Arc;
/// let g = GeneratorSource::new(Some(1_000), Arc::new(|i| i * 2)).with_rate(500.0);
/// # let _ = g;
/// ```
pub struct GeneratorSource<T> {
    count: Option<u64>,
    f: Arc<dyn Fn(u64) -> T + Send + Sync>,
    rate: Option<f64>,
    sequences: Option<Sequences>,
    emitted: u64,
    started: Option<i64>,
}

impl<T> GeneratorSource<T> {
    /// Generates `f(i)` for `i < count` (`None`: no end).
    pub fn new(count: Option<u64>, f: Arc<dyn Fn(u64) -> T + Send + Sync>) -> Self {
        GeneratorSource {
            count,
            f,
            rate: None,
            sequences: None,
            emitted: 0,
            started: None,
        }
    }

    /// Limits the total rate (over all subtasks) to `events_per_second`.
    pub fn with_rate(mut self, events_per_second: f64) -> Self {
        self.rate = Some(events_per_second);
        self
    }
}

impl<T: Data> SourceFunction for GeneratorSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.sequences = Some(Sequences::open(ctx)?);
        self.rate = self.rate.map(|r| r / ctx.info().parallelism.max(1) as f64);
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let mut n = ctx.info().batch_size.max(1) as u64;
        if let Some(rate) = self.rate {
            let now = ctx.processing_time();
            let start = *self.started.get_or_insert(now);
            let due = ((now - start).max(0) as f64 * rate / 1000.0) as u64 + 1;
            if due <= self.emitted {
                let wait_ms = ((self.emitted as f64) * 1000.0 / rate) as i64 - (now - start);
                return Ok(SourceStatus::Idle(Duration::from_millis(wait_ms.max(1) as u64)));
            }
            n = n.min(due - self.emitted);
        }
        let Some(sequences) = self.sequences.as_mut() else {
            return Err(RuntimeError::Internal("generator polled before open".into()));
        };
        let end = self.count.unwrap_or(u64::MAX);
        let mut batch = Vec::with_capacity(n as usize);
        let f = &self.f;
        sequences.take(end, n as usize, |i| batch.push(Record::untimed(f(i))));
        if batch.is_empty() {
            return Ok(SourceStatus::Finished);
        }
        self.emitted += batch.len() as u64;
        out.emit(Box::new(batch))?;
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        self.sequences
            .as_ref()
            .map_or_else(|| Ok(StateSnapshot::default()), Sequences::snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::test_support::{drain, VecOutput};
    use floe_runtime::{ManualClock, OperatorContext, TaskInfo};

    #[test]
    fn union_over_subtasks_is_exactly_the_range() {
        for p in 1..=3 {
            let mut all: Vec<u64> = Vec::new();
            for s in 0..p {
                let mut g = GeneratorSource::new(Some(1_001), Arc::new(|i| i));
                let mut info = TaskInfo::new("t", "g", s, p, 128);
                info.batch_size = 64;
                all.extend(drain::<u64>(&mut g, info));
            }
            all.sort();
            assert_eq!(all, (0..1_001).collect::<Vec<u64>>(), "parallelism {p}");
        }
    }

    #[test]
    fn rate_limit_emits_only_what_is_due() {
        let clock = ManualClock::new(10_000);
        let mut ctx = OperatorContext::new(TaskInfo::new("t", "g", 0, 2, 128), Arc::new(clock.clone()));
        let mut g = GeneratorSource::new(None, Arc::new(|i| i)).with_rate(200.0); // 100/s per subtask
        g.open(&mut ctx).unwrap();
        let mut out = VecOutput::default();
        assert_eq!(g.poll_batch(&mut ctx, &mut out).unwrap(), SourceStatus::More);
        assert_eq!(out.values::<u64>(), vec![0], "one record is due at the start");
        assert_eq!(
            g.poll_batch(&mut ctx, &mut out).unwrap(),
            SourceStatus::Idle(Duration::from_millis(10))
        );
        clock.advance(105);
        assert_eq!(g.poll_batch(&mut ctx, &mut out).unwrap(), SourceStatus::More);
        assert_eq!(out.values::<u64>(), vec![2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
        assert!(matches!(
            g.poll_batch(&mut ctx, &mut out).unwrap(),
            SourceStatus::Idle(_)
        ));
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;
    use crate::source::test_support::VecOutput;
    use floe_checkpoints::{KeyGroupRange, StateSnapshot};
    use floe_runtime::{CheckpointBarrier, ManualClock, OperatorContext, TaskInfo};

    #[test]
    fn sequences_restore_exactly_at_any_parallelism() {
        let barrier = CheckpointBarrier {
            id: 1,
            timestamp: 0,
            is_savepoint: false,
        };
        for (before, after) in [(2, 3), (3, 1), (1, 2)] {
            let mut seen: Vec<u64> = Vec::new();
            let mut snaps = Vec::new();
            for s in 0..before {
                let mut info = TaskInfo::new("t", "g", s, before, 128);
                info.batch_size = 10;
                let mut ctx = OperatorContext::new(info, Arc::new(ManualClock::new(0)));
                let mut g = GeneratorSource::new(Some(1_000), Arc::new(|i| i));
                g.open(&mut ctx).unwrap();
                let mut out = VecOutput::default();
                for _ in 0..=s {
                    g.poll_batch(&mut ctx, &mut out).unwrap();
                }
                seen.extend(out.values::<u64>());
                snaps.push(g.snapshot_state(&barrier, &mut ctx).unwrap());
            }
            for s in 0..after {
                let mut ctx =
                    OperatorContext::new(TaskInfo::new("t", "g", s, after, 128), Arc::new(ManualClock::new(0)));
                ctx.set_restored_state(StateSnapshot::for_subtask(
                    &snaps,
                    KeyGroupRange::for_subtask(128, after, s),
                    s,
                    after,
                ));
                let mut g = GeneratorSource::new(Some(1_000), Arc::new(|i| i));
                g.open(&mut ctx).unwrap();
                let mut out = VecOutput::default();
                while g.poll_batch(&mut ctx, &mut out).unwrap() != SourceStatus::Finished {}
                seen.extend(out.values::<u64>());
            }
            seen.sort();
            assert_eq!(seen, (0..1_000).collect::<Vec<u64>>(), "{before} -> {after}");
        }
    }
}
