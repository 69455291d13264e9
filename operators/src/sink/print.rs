//! Printing to stdout.

use std::fmt::Debug;
use std::io::Write;
use std::marker::PhantomData;

use floe_runtime::metrics::SinkLatency;
use floe_runtime::{downcast_batch, Batch, Data, Operator, OperatorContext, Output, Result, RuntimeError};

/// Prints every value with `{:?}`, prefixed by `subtask> ` when parallel (as Flink's
/// `print()`).
///
/// ```
/// use floe_operators::sink::print::PrintSink;
/// let sink = PrintSink::<u32>::new();
/// # let _ = sink;
/// ```
pub struct PrintSink<T> {
    prefix: String,
    latency: Option<SinkLatency>,
    _t: PhantomData<fn(T)>,
}

impl<T> PrintSink<T> {
    /// A sink printing to stdout.
    pub fn new() -> Self {
        PrintSink {
            prefix: String::new(),
            latency: None,
            _t: PhantomData,
        }
    }
}

impl<T> Default for PrintSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Data + Debug> Operator for PrintSink<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        if ctx.info().parallelism > 1 {
            self.prefix = format!("{}> ", ctx.info().subtask_index + 1);
        }
        self.latency = Some(SinkLatency::new(ctx.info()));
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: Batch, ctx: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let records = downcast_batch::<T>(batch)?;
        if let Some(l) = &mut self.latency {
            l.record_batch(records.iter().map(|r| r.timestamp), ctx.processing_time());
        }
        let stdout = std::io::stdout();
        let mut w = stdout.lock();
        for r in records {
            writeln!(w, "{}{:?}", self.prefix, r.value).map_err(|e| RuntimeError::external("writing to stdout", e))?;
        }
        w.flush().map_err(|e| RuntimeError::external("writing to stdout", e))
    }
}
