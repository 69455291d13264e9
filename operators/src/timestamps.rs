//! Timestamp assignment and watermark generation (Flink's `WatermarkStrategy` with bounded
//! out-of-orderness and idleness).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Result, Timestamp,
    MAX_WATERMARK, MIN_WATERMARK,
};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Watermarks that trail the largest timestamp seen by a fixed delay: an event may arrive up
/// to `max_out_of_orderness` after a later one and still be on time.
///
/// ```
/// use floe_operators::timestamps::BoundedOutOfOrderness;
/// use std::time::Duration;
/// let s = BoundedOutOfOrderness::new(Duration::from_secs(2)).with_idleness(Duration::from_secs(30));
/// assert_eq!(s.max_out_of_orderness_ms(), 2_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedOutOfOrderness {
    delay_ms: i64,
    idle_ms: Option<i64>,
}

impl BoundedOutOfOrderness {
    /// Watermark = max timestamp - `max_out_of_orderness` - 1.
    pub fn new(max_out_of_orderness: Duration) -> Self {
        BoundedOutOfOrderness {
            delay_ms: millis(max_out_of_orderness),
            idle_ms: None,
        }
    }

    /// For timestamps that never go back.
    pub fn monotonous() -> Self {
        Self::new(Duration::ZERO)
    }

    /// Declares this input idle after `timeout` without records, so it stops holding back
    /// the watermark downstream until records come again.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_ms = Some(millis(timeout).max(1));
        self
    }

    /// The allowed lateness of events relative to the newest one.
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        self.delay_ms
    }

    /// The idleness timeout, if any.
    pub fn idle_timeout_ms(&self) -> Option<i64> {
        self.idle_ms
    }
}

/// Sets each record's timestamp from its value and emits watermarks after every batch in
/// which they advanced. Upstream watermarks are replaced by this one's, except the final one.
pub struct TimestampsAndWatermarks<T, F> {
    extract: Arc<F>,
    strategy: BoundedOutOfOrderness,
    max_ts: Timestamp,
    emitted: Timestamp,
    last_data: Timestamp,
    idle: bool,
    _t: PhantomData<fn(T)>,
}

impl<T, F> TimestampsAndWatermarks<T, F> {
    /// Assigns timestamps with `extract` and watermarks by `strategy`.
    pub fn new(extract: Arc<F>, strategy: BoundedOutOfOrderness) -> Self {
        TimestampsAndWatermarks {
            extract,
            strategy,
            max_ts: MIN_WATERMARK,
            emitted: MIN_WATERMARK,
            last_data: 0,
            idle: false,
            _t: PhantomData,
        }
    }
}

impl<T: Data, F: Fn(&T) -> Timestamp + Send + Sync + 'static> Operator for TimestampsAndWatermarks<T, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        // Restored at another parallelism, several old subtasks' progress may land here:
        // the least of them never runs ahead of what any of them had seen.
        if let Some(s) = ctx.restored_state() {
            let seen: Vec<Timestamp> = s
                .operator
                .iter()
                .map(|b| decode(b))
                .collect::<std::result::Result<_, _>>()?;
            if let Some(min) = seen.into_iter().min() {
                self.max_ts = min;
            }
        }
        self.last_data = ctx.processing_time();
        if let Some(idle) = self.strategy.idle_ms {
            ctx.request_wakeup(self.last_data.saturating_add(idle));
        }
        Ok(())
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let mut records = downcast_batch::<T>(batch)?;
        let f = &*self.extract;
        let mut max = self.max_ts;
        for r in &mut records {
            r.timestamp = f(&r.value);
            max = max.max(r.timestamp);
        }
        self.max_ts = max;
        if self.strategy.idle_ms.is_some() {
            self.last_data = ctx.processing_time();
            self.idle = false;
        }
        out.emit(Box::new(records))?;
        let wm = max.saturating_sub(self.strategy.delay_ms).saturating_sub(1);
        if wm > self.emitted && max != MIN_WATERMARK {
            self.emitted = wm;
            out.emit_watermark(wm)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        Ok(StateSnapshot {
            operator: vec![encode(&self.max_ts)?],
            ..StateSnapshot::default()
        })
    }

    fn on_watermark(&mut self, watermark: Timestamp, _ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        // Only the end of input passes: this operator owns event time downstream.
        if watermark == MAX_WATERMARK && self.emitted < MAX_WATERMARK {
            self.emitted = MAX_WATERMARK;
            out.emit_watermark(MAX_WATERMARK)?;
        }
        Ok(())
    }

    fn on_idle(&mut self, _ctx: &mut OperatorContext, _out: &mut dyn Output) -> Result<()> {
        // Idleness is decided here, from this operator's own input.
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        let Some(idle) = self.strategy.idle_ms else {
            return Ok(());
        };
        let due = self.last_data.saturating_add(idle);
        if now >= due {
            if !self.idle {
                self.idle = true;
                out.emit_idle()?;
            }
            ctx.request_wakeup(now.saturating_add(idle));
        } else {
            ctx.request_wakeup(due);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::{Record, TaskInfo};

    #[test]
    fn watermark_trails_max_timestamp() {
        let op = TimestampsAndWatermarks::new(
            Arc::new(|v: &i64| *v),
            BoundedOutOfOrderness::new(Duration::from_millis(10)),
        );
        let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "ts", 0, 1, 128), 0).unwrap();
        h.process(vec![Record::untimed(100i64), Record::untimed(50)]).unwrap();
        assert_eq!(
            h.take_output::<i64>().unwrap(),
            vec![Record::new(100, 100), Record::new(50, 50)]
        );
        assert_eq!(h.take_watermarks(), vec![89]);
        h.process(vec![Record::untimed(95i64)]).unwrap();
        assert_eq!(h.take_watermarks(), Vec::<i64>::new(), "no regression, no repeat");
        h.watermark(1_000).unwrap();
        assert_eq!(
            h.take_watermarks(),
            Vec::<i64>::new(),
            "upstream watermarks are replaced"
        );
        h.watermark(MAX_WATERMARK).unwrap();
        assert_eq!(h.take_watermarks(), vec![MAX_WATERMARK]);
    }

    #[test]
    fn goes_idle_after_timeout_without_data() {
        let strategy = BoundedOutOfOrderness::monotonous().with_idleness(Duration::from_millis(100));
        let op = TimestampsAndWatermarks::new(Arc::new(|v: &i64| *v), strategy);
        let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "ts", 0, 1, 128), 1_000).unwrap();
        h.set_processing_time(1_050).unwrap();
        h.process(vec![Record::untimed(7i64)]).unwrap();
        h.set_processing_time(1_120).unwrap();
        assert_eq!(h.context().next_wakeup(), Some(1_150), "re-armed from the last record");
        assert_eq!(h.take_idle_count(), 0);
        h.set_processing_time(1_150).unwrap();
        assert_eq!(h.take_idle_count(), 1);
        h.set_processing_time(1_300).unwrap();
        assert_eq!(h.take_idle_count(), 0, "idleness is announced once");
        h.process(vec![Record::untimed(8i64)]).unwrap();
        h.set_processing_time(1_400).unwrap();
        assert_eq!(h.take_idle_count(), 1, "idle again after new data went quiet");
        assert_eq!(h.take_values::<i64>().unwrap(), vec![7, 8]);
    }
}
