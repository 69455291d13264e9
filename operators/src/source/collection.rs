//! A source over an in-memory collection.

use std::sync::Arc;

use floe_runtime::{Data, OperatorContext, Output, Record, Result, SourceFunction, SourceStatus};

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
    next: usize,
    step: usize,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Arc<Vec<T>>) -> Self {
        CollectionSource {
            items,
            next: 0,
            step: 1,
        }
    }
}

impl<T: Data + Sync> SourceFunction for CollectionSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.next = ctx.info().subtask_index;
        self.step = ctx.info().parallelism.max(1);
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        if self.next >= self.items.len() {
            return Ok(SourceStatus::Finished);
        }
        let max = ctx.info().batch_size.max(1);
        let mut batch = Vec::with_capacity(max.min(self.items.len()));
        while batch.len() < max && self.next < self.items.len() {
            batch.push(Record::untimed(self.items[self.next].clone()));
            self.next += self.step;
        }
        out.emit(Box::new(batch))?;
        Ok(SourceStatus::More)
    }
}
