//! A source over an in-memory collection.

use std::sync::Arc;

use floe_checkpoints::StateSnapshot;
use floe_runtime::{
    CheckpointBarrier, Data, OperatorContext, Output, Record, Result, RuntimeError, SourceFunction, SourceStatus,
};

use super::sequences::Sequences;

/// Emits the items of a collection; subtask `i` of `p` emits items `i, i + p, ...` in order.
///
/// ```
/// use floe_operators::source::collection::CollectionSource;
/// use std::sync::Arc;
/// let source = CollectionSource::new(Arc::new(vec![1, 2, 3]));
/// # let _ = source;
/// ```
pub struct CollectionSource<T> {
    items: Arc<Vec<T>>,
    sequences: Option<Sequences>,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Arc<Vec<T>>) -> Self {
        CollectionSource { items, sequences: None }
    }
}

impl<T: Data + Sync> SourceFunction for CollectionSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.sequences = Some(Sequences::open(ctx)?);
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let Some(sequences) = self.sequences.as_mut() else {
            return Err(RuntimeError::Internal("collection source polled before open".into()));
        };
        let max = ctx.info().batch_size.max(1);
        let mut batch = Vec::with_capacity(max.min(self.items.len()));
        let items = &self.items;
        sequences.take(items.len() as u64, max, |i| {
            batch.push(Record::untimed(items[i as usize].clone()))
        });
        if batch.is_empty() {
            return Ok(SourceStatus::Finished);
        }
        out.emit(Box::new(batch))?;
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        self.sequences
            .as_ref()
            .map_or_else(|| Ok(StateSnapshot::default()), Sequences::snapshot)
    }
}
