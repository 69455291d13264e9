//! A source over an in-memory collection.

use std::sync::Arc;

use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::{CheckpointBarrier, Data, OperatorContext, Output, Record, Result, SourceFunction, SourceStatus};

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
    /// Index sequences still to emit: (next, step), dealt out on a restore.
    sequences: Vec<(u64, u64)>,
}

impl<T> CollectionSource<T> {
    /// A source over `items`.
    pub fn new(items: Arc<Vec<T>>) -> Self {
        CollectionSource {
            items,
            sequences: Vec::new(),
        }
    }
}

impl<T: Data + Sync> SourceFunction for CollectionSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let (index, p) = (ctx.info().subtask_index as u64, ctx.info().parallelism.max(1) as u64);
        self.sequences = match ctx.restored_state() {
            Some(s) => s
                .operator
                .iter()
                .map(|b| decode(b))
                .collect::<std::result::Result<_, _>>()?,
            None => vec![(index, p)],
        };
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let len = self.items.len() as u64;
        self.sequences.retain(|(next, _)| *next < len);
        let Some((next, step)) = self.sequences.first_mut() else {
            return Ok(SourceStatus::Finished);
        };
        let max = ctx.info().batch_size.max(1);
        let mut batch = Vec::with_capacity(max.min(self.items.len()));
        while batch.len() < max && *next < len {
            batch.push(Record::untimed(self.items[*next as usize].clone()));
            *next += *step;
        }
        out.emit(Box::new(batch))?;
        Ok(SourceStatus::More)
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        let operator = self
            .sequences
            .iter()
            .map(encode)
            .collect::<std::result::Result<_, _>>()?;
        Ok(StateSnapshot {
            operator,
            ..StateSnapshot::default()
        })
    }
}
