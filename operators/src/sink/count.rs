//! Counting and discarding, for benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use floe_runtime::{Batch, Operator, OperatorContext, Output, Result};

/// Reads what a [`CountingSink`] counted.
#[derive(Clone, Debug)]
pub struct CountHandle {
    counter: Arc<AtomicU64>,
}

impl CountHandle {
    /// A handle on `counter`.
    ///
    /// ```
    /// use floe_operators::sink::count::CountHandle;
    /// use std::sync::{Arc, atomic::AtomicU64};
    /// assert_eq!(CountHandle::new(Arc::new(AtomicU64::new(3))).get(), 3);
    /// ```
    pub fn new(counter: Arc<AtomicU64>) -> Self {
        CountHandle { counter }
    }

    /// Records counted so far.
    pub fn get(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

/// Counts records of any type and drops them: one atomic add per batch, no downcast.
pub struct CountingSink {
    counter: Arc<AtomicU64>,
}

impl CountingSink {
    /// A sink adding to `counter`.
    ///
    /// ```
    /// use floe_operators::sink::count::CountingSink;
    /// use std::sync::{Arc, atomic::AtomicU64};
    /// let sink = CountingSink::new(Arc::new(AtomicU64::new(0)));
    /// # let _ = sink;
    /// ```
    pub fn new(counter: Arc<AtomicU64>) -> Self {
        CountingSink { counter }
    }
}

impl Operator for CountingSink {
    fn process_batch(&mut self, _: usize, batch: Batch, _: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        self.counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
