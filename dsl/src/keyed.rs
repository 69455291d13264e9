//! Keyed and windowed streams.

use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::{assign_key_group, AggregateFunction, StateData, StateKey};
use floe_operators::keyed::{KeyedProcessFunction, KeyedProcessOperator, RollingReduce};
use floe_operators::window::{self, ProcessWindowFunction, WindowAssigner, WindowConfig, Windowed};
use floe_operators::OutputTag;
use floe_runtime::{Data, Route};

use crate::builder::Ship;
use crate::stream::{factory, Prototype, Stream};

/// A stream partitioned by key (Flink's `KeyedStream`).
///
/// ```
/// use floe_dsl::prelude::*;
/// let env = Env::local(2);
/// let keyed: KeyedStream<u32, (u32, u64)> = env.from_collection(vec![(1, 5), (1, 6)]).key_by(|v| v.0);
/// let out = keyed.reduce(|a, b| (a.0, a.1 + b.1)).collect();
/// env.execute("keyed").unwrap();
/// assert_eq!(out.take(), vec![(1, 5), (1, 11)]);
/// ```
pub struct KeyedStream<K, T> {
    input: Stream<T>,
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        KeyedStream {
            input: self.input.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K: StateKey, T: Data> KeyedStream<K, T> {
    pub(crate) fn new(input: Stream<T>, key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>) -> Self {
        KeyedStream { input, key_fn }
    }

    fn route(&self) -> Route<T> {
        let max = self.input.b.borrow().config.max_parallelism;
        let key_fn = self.key_fn.clone();
        Route::Hash(Arc::new(move |v: &T| assign_key_group(&key_fn(v), max)), max)
    }

    /// The stream before partitioning.
    pub(crate) fn input(&self) -> &Stream<T> {
        &self.input
    }

    /// The key selector.
    pub(crate) fn key_fn(&self) -> Arc<dyn Fn(&T) -> K + Send + Sync> {
        self.key_fn.clone()
    }

    pub(crate) fn keyed_operator<O: Data>(&self, name: &str, f: floe_runtime::OperatorFactory) -> Stream<O> {
        let p = self.input.b.borrow().config.parallelism;
        self.input.add_operator(name, p, Ship::Hash, Some(self.route()), f)
    }

    /// Runs a [`KeyedProcessFunction`] (cloned per subtask) with keyed state and timers.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// #[derive(Clone)]
    /// struct Dedup { seen: ValueStateDescriptor<bool> }
    /// impl KeyedProcessFunction<u32, u32, u32> for Dedup {
    ///     fn process_element(&mut self, v: u32, ctx: &mut KeyedContext<'_, u32>, out: &mut Collector<u32>) -> Result<(), UserError> {
    ///         if ctx.state().get(&self.seen)?.is_none() {
    ///             ctx.state().set(&self.seen, true)?;
    ///             out.collect(v);
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let env = Env::local(2);
    /// let out = env.from_collection(vec![1, 2, 1, 3, 2])
    ///     .key_by(|v| *v)
    ///     .process(Dedup { seen: ValueStateDescriptor::new("seen") })
    ///     .collect();
    /// env.execute("dedup").unwrap();
    /// let mut v = out.take();
    /// v.sort();
    /// assert_eq!(v, vec![1, 2, 3]);
    /// ```
    pub fn process<O: Data, P: KeyedProcessFunction<K, T, O> + Clone>(&self, function: P) -> Stream<O> {
        let key_fn = self.key_fn.clone();
        let prototype = Prototype::new(function);
        self.keyed_operator(
            "keyed-process",
            factory(move |_| Box::new(KeyedProcessOperator::new(key_fn.clone(), prototype.get()))),
        )
    }

    /// A rolling reduce: emits the key's reduced value after every record.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec![(1, 10), (1, 5)]).key_by(|v| v.0).reduce(|a, b| (a.0, a.1 + b.1)).collect();
    /// env.execute("reduce").unwrap();
    /// assert_eq!(out.take(), vec![(1, 10), (1, 15)]);
    /// ```
    pub fn reduce(&self, f: impl Fn(&T, &T) -> T + Send + Sync + 'static) -> Stream<T>
    where
        T: StateData,
    {
        let f = Arc::new(f);
        let key_fn = self.key_fn.clone();
        self.keyed_operator(
            "reduce",
            factory(move |_| Box::new(KeyedProcessOperator::new(key_fn.clone(), RollingReduce::new(f.clone())))),
        )
    }

    /// Groups each key's records into windows.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec![('a', 1_000i64), ('a', 3_000), ('a', 12_000)])
    ///     .assign_timestamps(|v| v.1, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|v| v.0.to_string())
    ///     .window(EventTimeSessionWindows::with_gap(Duration::from_secs(5)))
    ///     .aggregate(Count)
    ///     .map(|w| (w.window.start, w.window.end, w.value))
    ///     .collect();
    /// env.execute("sessions").unwrap();
    /// assert_eq!(out.take(), vec![(1_000, 8_000, 2), (12_000, 17_000, 1)]);
    /// ```
    pub fn window<A: WindowAssigner>(&self, assigner: A) -> WindowedStream<K, T> {
        if let Err(e) = assigner.validate() {
            self.input.b.borrow_mut().error(e);
        }
        WindowedStream {
            keyed: KeyedStream {
                input: self.input.clone(),
                key_fn: self.key_fn.clone(),
            },
            assigner: Arc::new(assigner),
            config: WindowConfig::default(),
        }
    }
}

/// A keyed stream grouped into windows (Flink's `WindowedStream`).
///
/// ```
/// use floe_dsl::prelude::*;
/// use std::time::Duration;
/// let env = Env::local(1);
/// let windowed: WindowedStream<u8, i64> = env.from_collection(vec![1i64, 2, 3])
///     .assign_timestamps(|t| *t, BoundedOutOfOrderness::monotonous())
///     .key_by(|_| 0u8)
///     .window(TumblingEventTimeWindows::of(Duration::from_secs(1)));
/// let sum = windowed.aggregate(Sum::of(|v: &i64| *v)).map(|w| w.value).collect();
/// env.execute("windowed").unwrap();
/// assert_eq!(sum.take(), vec![6]);
/// ```
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    assigner: Arc<dyn WindowAssigner>,
    config: WindowConfig,
}

impl<K: StateKey, T: Data> WindowedStream<K, T> {
    /// Keeps windows `lateness` past their end (in event time): a late record within it
    /// updates the window, which fires again with the new result.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// // One record per batch, so that a watermark follows every record.
    /// let env = Env::with_config(floe_dsl::JobConfig { parallelism: 1, batch_size: 1, ..Default::default() });
    /// let late: OutputTag<i64> = OutputTag::new("late");
    /// let counts = env.from_collection(vec![1_000i64, 70_000, 2_000, 130_000, 3_000])
    ///     .assign_timestamps(|t| *t, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|_| 0u8)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .allowed_lateness(Duration::from_secs(15))
    ///     .side_output_late_data(&late)
    ///     .aggregate(Count);
    /// let late_records = counts.side_output(&late).collect();
    /// let out = counts.map(|w| (w.window.start, w.value)).collect();
    /// env.execute("lateness").unwrap();
    /// // [0, 60s) fires at 70s with 1, again with 2 for the late 2s record; 3s comes after 75s: too late.
    /// assert_eq!(out.take(), vec![(0, 1), (0, 2), (60_000, 1), (120_000, 1)]);
    /// assert_eq!(late_records.take(), vec![3_000]);
    /// ```
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.config.allowed_lateness_ms = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Sends records that arrive after their windows were purged to the side output `tag`
    /// (read it with [`Stream::side_output`] on the window's result stream).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::with_config(floe_dsl::JobConfig { parallelism: 1, batch_size: 1, ..Default::default() });
    /// let late: OutputTag<i64> = OutputTag::new("late");
    /// let counts = env.from_collection(vec![5_000i64, 20_000, 1_000])
    ///     .assign_timestamps(|t| *t, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|_| ())
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
    ///     .side_output_late_data(&late)
    ///     .aggregate(Count);
    /// let too_late = counts.side_output(&late).collect();
    /// counts.count();
    /// env.execute("late").unwrap();
    /// assert_eq!(too_late.take(), vec![1_000]);
    /// ```
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.config.late_tag = Some(tag.id());
        self
    }

    /// Reduces each window's records incrementally; emits `Windowed { key, window, value }`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec![(1u32, 5i64, 100i64), (1, 7, 200), (1, 2, 10_500)])
    ///     .assign_timestamps(|v| v.2, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|v| v.0)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
    ///     .reduce(|a, b| (a.0, a.1.max(b.1), a.2.max(b.2)))
    ///     .map(|w| w.value.1)
    ///     .collect();
    /// env.execute("max").unwrap();
    /// assert_eq!(out.take(), vec![7, 2]);
    /// ```
    pub fn reduce(&self, f: impl Fn(&T, &T) -> T + Send + Sync + 'static) -> Stream<Windowed<K, T>>
    where
        T: StateData,
    {
        let (key_fn, assigner, config, f) = (
            self.keyed.key_fn.clone(),
            self.assigner.clone(),
            self.config.clone(),
            Arc::new(f),
        );
        let reduce: floe_checkpoints::ReduceFn<T> = f;
        self.keyed.keyed_operator(
            "window-reduce",
            factory(move |_| window::reduce_operator(key_fn.clone(), assigner.clone(), reduce.clone(), config.clone())),
        )
    }

    /// Aggregates each window incrementally with an [`AggregateFunction`] (e.g.
    /// [`Count`](crate::prelude::Count)); emits `Windowed { key, window, value }`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::local(2);
    /// let out = env.from_collection((0..100i64).map(|i| (i % 4, i * 100)))
    ///     .assign_timestamps(|v| v.1, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|v| v.0)
    ///     .window(SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5)))
    ///     .aggregate(Count)
    ///     .collect();
    /// env.execute("sliding").unwrap();
    /// let total: u64 = out.take().iter().map(|w| w.value).sum();
    /// assert_eq!(total, 200); // every record is in two windows
    /// ```
    pub fn aggregate<A: AggregateFunction<T>>(&self, agg: A) -> Stream<Windowed<K, A::Out>>
    where
        A::Out: Data,
    {
        let (key_fn, assigner, config, agg) = (
            self.keyed.key_fn.clone(),
            self.assigner.clone(),
            self.config.clone(),
            Arc::new(agg),
        );
        self.keyed.keyed_operator(
            "window-aggregate",
            factory(move |_| window::aggregate_operator(key_fn.clone(), assigner.clone(), agg.clone(), config.clone())),
        )
    }

    /// Runs a full-window function over all of a window's records when it fires.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec![(1u32, 3i64), (1, 1), (1, 2)])
    ///     .assign_timestamps(|v| v.1, BoundedOutOfOrderness::new(Duration::from_millis(5)))
    ///     .key_by(|v| v.0)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
    ///     .process(|key: &u32, w: &TimeWindow, items: &[(u32, i64)], out: &mut Collector<String>| -> Result<(), UserError> {
    ///         let mut ts: Vec<i64> = items.iter().map(|i| i.1).collect();
    ///         ts.sort();
    ///         out.collect(format!("{key} {}..{} {ts:?}", w.start, w.end));
    ///         Ok(())
    ///     })
    ///     .collect();
    /// env.execute("window-process").unwrap();
    /// assert_eq!(out.take(), vec!["1 0..1000 [1, 2, 3]"]);
    /// ```
    pub fn process<O: Data, F: ProcessWindowFunction<K, T, O> + Clone>(&self, function: F) -> Stream<O>
    where
        T: StateData,
    {
        let (key_fn, assigner, config) = (self.keyed.key_fn.clone(), self.assigner.clone(), self.config.clone());
        let prototype = Prototype::new(function);
        self.keyed.keyed_operator(
            "window-process",
            factory(move |_| {
                window::process_operator(
                    key_fn.clone(),
                    assigner.clone(),
                    Box::new(prototype.get()),
                    config.clone(),
                )
            }),
        )
    }
}
