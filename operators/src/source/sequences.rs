//! Index sequences `next, next + step, ...`: the position of sources that emit items by
//! index (collections, the generator), checkpointed as one item per sequence so that a
//! restore at another parallelism can deal them out.

use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::{OperatorContext, Result};

/// The sequences a subtask emits from.
pub(crate) struct Sequences(Vec<(u64, u64)>);

impl Sequences {
    /// This subtask's sequences: restored ones, or `index, index + p, ...` on a fresh start.
    pub(crate) fn open(ctx: &OperatorContext) -> Result<Self> {
        let (index, p) = (ctx.info().subtask_index as u64, ctx.info().parallelism.max(1) as u64);
        Ok(Sequences(match ctx.restored_state() {
            Some(s) => s
                .operator
                .iter()
                .map(|b| decode(b))
                .collect::<std::result::Result<_, _>>()?,
            None => vec![(index, p)],
        }))
    }

    /// The smallest next index below `end`, advancing its sequence: several sequences
    /// (restored from more subtasks than run now) interleave in index order, so what was
    /// emitted in order stays in order.
    pub(crate) fn next_below(&mut self, end: u64) -> Option<u64> {
        let (next, step) = self.0.iter_mut().filter(|(next, _)| *next < end).min()?;
        let i = *next;
        *next = next.saturating_add(*step);
        Some(i)
    }

    /// Calls `emit` with up to `n` next indices below `end`, in index order; returns how many.
    pub(crate) fn take(&mut self, end: u64, n: usize, mut emit: impl FnMut(u64)) -> usize {
        if let [(next, step)] = self.0.as_mut_slice() {
            // The usual case, one sequence: a tight loop.
            let mut taken = 0;
            while taken < n && *next < end {
                emit(*next);
                *next = next.saturating_add(*step);
                taken += 1;
            }
            return taken;
        }
        let mut taken = 0;
        while taken < n {
            let Some(i) = self.next_below(end) else { break };
            emit(i);
            taken += 1;
        }
        taken
    }

    /// The sequences as operator-state items.
    pub(crate) fn snapshot(&self) -> Result<StateSnapshot> {
        let operator = self.0.iter().map(encode).collect::<std::result::Result<_, _>>()?;
        Ok(StateSnapshot {
            operator,
            ..StateSnapshot::default()
        })
    }
}
