//! Drives sources by hand in unit tests.

use std::sync::Arc;

use floe_runtime::{
    downcast_batch, Batch, Data, ManualClock, OperatorContext, Output, Record, Result, SourceFunction, SourceStatus,
    TaskInfo, Timestamp,
};

/// Collects what a source emits.
#[derive(Default)]
pub(crate) struct VecOutput {
    pub(crate) main: Vec<Batch>,
    pub(crate) side: Vec<(u64, Batch)>,
}

impl Output for VecOutput {
    fn emit(&mut self, batch: Batch) -> Result<()> {
        self.main.push(batch);
        Ok(())
    }
    fn emit_side(&mut self, tag: u64, batch: Batch) -> Result<()> {
        self.side.push((tag, batch));
        Ok(())
    }
    fn emit_watermark(&mut self, _: Timestamp) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self) -> Result<()> {
        Ok(())
    }
}

impl VecOutput {
    pub(crate) fn values<T: Data>(&mut self) -> Vec<T> {
        self.main
            .drain(..)
            .flat_map(|b| downcast_batch::<T>(b).unwrap())
            .map(|r| r.value)
            .collect()
    }

    pub(crate) fn side_values<T: Data>(&mut self) -> Vec<T> {
        self.side
            .drain(..)
            .flat_map(|(_, b)| downcast_batch::<T>(b).unwrap())
            .map(|r: Record<T>| r.value)
            .collect()
    }
}

/// Runs a source to its end as subtask `info`; returns the values.
pub(crate) fn drain<T: Data>(source: &mut dyn SourceFunction, info: TaskInfo) -> Vec<T> {
    let mut out = VecOutput::default();
    drain_into(source, info, &mut out).unwrap();
    out.values()
}

/// Runs a source to its end, keeping everything it emitted.
pub(crate) fn drain_into(source: &mut dyn SourceFunction, info: TaskInfo, out: &mut VecOutput) -> Result<()> {
    let mut ctx = OperatorContext::new(info, Arc::new(ManualClock::new(0)));
    source.open(&mut ctx)?;
    while source.poll_batch(&mut ctx, out)? != SourceStatus::Finished {}
    Ok(())
}
