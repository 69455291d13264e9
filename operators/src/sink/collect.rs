//! Collecting into memory, for tests and examples.

use std::sync::{Arc, Mutex, MutexGuard};

use floe_runtime::metrics::SinkLatency;
use floe_runtime::{downcast_batch, Batch, Data, Operator, OperatorContext, Output, Result};

/// Reads what a [`CollectSink`] gathered.
pub struct CollectHandle<T> {
    target: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        CollectHandle {
            target: self.target.clone(),
        }
    }
}

fn lock<T>(m: &Mutex<Vec<T>>) -> MutexGuard<'_, Vec<T>> {
    // A panicking sink task cannot leave the vector half-written: take it as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> CollectHandle<T> {
    /// A handle on `target`.
    ///
    /// ```
    /// use floe_operators::sink::collect::CollectHandle;
    /// use std::sync::{Arc, Mutex};
    /// let h = CollectHandle::new(Arc::new(Mutex::new(vec![1, 2])));
    /// assert_eq!(h.len(), 2);
    /// assert_eq!(h.take(), vec![1, 2]);
    /// assert!(h.is_empty());
    /// ```
    pub fn new(target: Arc<Mutex<Vec<T>>>) -> Self {
        CollectHandle { target }
    }

    /// Takes every value collected so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *lock(&self.target))
    }

    /// Number of values collected so far.
    pub fn len(&self) -> usize {
        lock(&self.target).len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends every value to a shared vector (one lock per batch).
pub struct CollectSink<T> {
    target: Arc<Mutex<Vec<T>>>,
    latency: Option<SinkLatency>,
}

impl<T> CollectSink<T> {
    /// A sink appending to `target`.
    ///
    /// ```
    /// use floe_operators::sink::collect::CollectSink;
    /// use std::sync::{Arc, Mutex};
    /// let sink = CollectSink::<u8>::new(Arc::new(Mutex::new(Vec::new())));
    /// # let _ = sink;
    /// ```
    pub fn new(target: Arc<Mutex<Vec<T>>>) -> Self {
        CollectSink { target, latency: None }
    }
}

impl<T: Data> Operator for CollectSink<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.latency = Some(SinkLatency::new(ctx.info()));
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: Batch, ctx: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let records = downcast_batch::<T>(batch)?;
        if let Some(l) = &mut self.latency {
            l.record_batch(records.iter().map(|r| r.timestamp), ctx.processing_time());
        }
        lock(&self.target).extend(records.into_iter().map(|r| r.value));
        Ok(())
    }
}
