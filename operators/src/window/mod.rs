//! Windows: assigners (tumbling, sliding, session; event and processing time), and the
//! window operator with allowed lateness, a late-data side output and incremental
//! (`reduce`, `aggregate`) or full-window (`process`) functions.
//!
//! Semantics follow Flink's `WindowOperator` with the default event- and processing-time
//! triggers: a window fires when the watermark (or the clock) reaches its last millisecond;
//! with allowed lateness its state is kept that much longer and every late record fires it
//! again with the updated result; records whose windows are all past that go to the late
//! side output.

mod assigner;
mod contents;
mod operator;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use floe_checkpoints::{AggregateFunction, ReduceFn, StateData, StateKey};
use floe_runtime::{Data, Operator, UserError};
use serde::{Deserialize, Serialize};

pub use assigner::{
    EventTimeSessionWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows, SlidingProcessingTimeWindows,
    TumblingEventTimeWindows, TumblingProcessingTimeWindows, WindowAssigner,
};

use crate::collector::Collector;
use contents::{AggregateContents, ListContents, ReduceAggregate};
use operator::WindowOperator;

/// A window of event (or processing) time, `[start, end)` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl TimeWindow {
    /// The window `[start, end)`.
    ///
    /// ```
    /// use floe_operators::window::TimeWindow;
    /// let w = TimeWindow::new(0, 10);
    /// assert_eq!(w.max_timestamp(), 9);
    /// assert!(w.intersects(&TimeWindow::new(10, 20)));
    /// assert_eq!(w.cover(&TimeWindow::new(5, 30)), TimeWindow::new(0, 30));
    /// ```
    pub fn new(start: i64, end: i64) -> Self {
        TimeWindow { start, end }
    }

    /// The last millisecond in the window; results carry it as their timestamp.
    pub fn max_timestamp(&self) -> i64 {
        self.end.saturating_sub(1)
    }

    /// Whether the windows overlap or touch (session windows that do are merged, as in Flink).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window containing both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// The result of a window for one key: what `reduce` and `aggregate` emit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Windowed<K, R> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: TimeWindow,
    /// The reduced or aggregated value.
    pub value: R,
}

/// A function over all records of a window, called when it fires (Flink's
/// `ProcessWindowFunction`). Closures `FnMut(&K, &TimeWindow, &[T], &mut Collector<O>)`
/// implement it.
pub trait ProcessWindowFunction<K, T, O>: Send + 'static {
    /// Processes the window `window` of `key`, whose records are `elements` (in arrival order).
    fn process(
        &mut self,
        key: &K,
        window: &TimeWindow,
        elements: &[T],
        out: &mut Collector<O>,
    ) -> Result<(), UserError>;
}

impl<K, T, O, F> ProcessWindowFunction<K, T, O> for F
where
    F: FnMut(&K, &TimeWindow, &[T], &mut Collector<O>) -> Result<(), UserError> + Send + 'static,
{
    fn process(
        &mut self,
        key: &K,
        window: &TimeWindow,
        elements: &[T],
        out: &mut Collector<O>,
    ) -> Result<(), UserError> {
        self(key, window, elements, out)
    }
}

/// Lateness and late-data handling of a window operator.
#[derive(Clone, Debug, Default)]
pub struct WindowConfig {
    /// How long (event time, ms) a window's state is kept after it fired.
    pub allowed_lateness_ms: i64,
    /// Side output for records too late for all their windows.
    pub late_tag: Option<u64>,
}

/// A window operator that reduces each window's records with `reduce`; emits
/// `Windowed<K, T>`.
///
/// ```
/// use floe_operators::window::{reduce_operator, TumblingEventTimeWindows, WindowConfig};
/// use std::sync::Arc;
/// use std::time::Duration;
/// let op = reduce_operator::<u32, (u32, i64)>(
///     Arc::new(|v| v.0),
///     Arc::new(TumblingEventTimeWindows::of(Duration::from_secs(1))),
///     Arc::new(|a, b| (a.0, a.1 + b.1)),
///     WindowConfig::default(),
/// );
/// # let _ = op;
/// ```
pub fn reduce_operator<K: StateKey, T: StateData>(
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    assigner: Arc<dyn WindowAssigner>,
    reduce: ReduceFn<T>,
    cfg: WindowConfig,
) -> Box<dyn Operator> {
    let contents = AggregateContents::new(
        Arc::new(ReduceAggregate { reduce }),
        |key: &K, window: &TimeWindow, value: Option<T>, out: &mut Collector<Windowed<K, T>>| {
            if let Some(value) = value {
                out.collect(Windowed {
                    key: key.clone(),
                    window: *window,
                    value,
                });
            }
            Ok(())
        },
    );
    Box::new(WindowOperator::new(key_fn, assigner, contents, cfg))
}

/// A window operator that aggregates each window's records with `agg`; emits
/// `Windowed<K, A::Out>`.
///
/// ```
/// use floe_operators::aggregate::Count;
/// use floe_operators::window::{aggregate_operator, SlidingEventTimeWindows, WindowConfig};
/// use std::sync::Arc;
/// use std::time::Duration;
/// let op = aggregate_operator::<u32, u32, Count>(
///     Arc::new(|v| *v),
///     Arc::new(SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5))),
///     Arc::new(Count),
///     WindowConfig::default(),
/// );
/// # let _ = op;
/// ```
pub fn aggregate_operator<K: StateKey, T: Data, A: AggregateFunction<T>>(
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    assigner: Arc<dyn WindowAssigner>,
    agg: Arc<A>,
    cfg: WindowConfig,
) -> Box<dyn Operator>
where
    A::Out: Data,
{
    let contents = AggregateContents::new(
        agg,
        |key: &K, window: &TimeWindow, value: A::Out, out: &mut Collector<Windowed<K, A::Out>>| {
            out.collect(Windowed {
                key: key.clone(),
                window: *window,
                value,
            });
            Ok(())
        },
    );
    Box::new(WindowOperator::new(key_fn, assigner, contents, cfg))
}

/// A window operator that keeps each window's records and hands them to `f` when it fires.
///
/// ```
/// use floe_operators::window::{process_operator, EventTimeSessionWindows, TimeWindow, WindowConfig};
/// use floe_operators::Collector;
/// use floe_runtime::UserError;
/// use std::sync::Arc;
/// use std::time::Duration;
/// let f = |k: &u32, w: &TimeWindow, items: &[u32], out: &mut Collector<String>| -> Result<(), UserError> {
///     out.collect(format!("{k}: {} items in {w:?}", items.len()));
///     Ok(())
/// };
/// let op = process_operator::<u32, u32, String>(
///     Arc::new(|v| *v),
///     Arc::new(EventTimeSessionWindows::with_gap(Duration::from_secs(30))),
///     Box::new(f),
///     WindowConfig::default(),
/// );
/// # let _ = op;
/// ```
pub fn process_operator<K: StateKey, T: StateData, O: Data>(
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    assigner: Arc<dyn WindowAssigner>,
    f: Box<dyn ProcessWindowFunction<K, T, O>>,
    cfg: WindowConfig,
) -> Box<dyn Operator> {
    Box::new(WindowOperator::new(key_fn, assigner, ListContents::new(f), cfg))
}
