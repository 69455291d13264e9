//! A deterministic generator source.

use std::sync::Arc;
use std::time::Duration;

use floe_runtime::{Data, OperatorContext, Output, Record, Result, SourceFunction, SourceStatus};

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
    next: u64,
    step: u64,
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
            next: 0,
            step: 1,
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
        self.next = ctx.info().subtask_index as u64;
        self.step = ctx.info().parallelism.max(1) as u64;
        self.rate = self.rate.map(|r| r / self.step as f64);
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        if self.count.is_some_and(|c| self.next >= c) {
            return Ok(SourceStatus::Finished);
        }
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
        if let Some(c) = self.count {
            n = n.min((c - self.next).div_ceil(self.step));
        }
        let mut batch = Vec::with_capacity(n as usize);
        for _ in 0..n {
            batch.push(Record::untimed((self.f)(self.next)));
            self.next += self.step;
        }
        self.emitted += n;
        out.emit(Box::new(batch))?;
        Ok(SourceStatus::More)
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
