//! Keyed process functions: per-key state and event- and processing-time timers (Flink's
//! `KeyedProcessFunction`), and the rolling reduce built on them.

mod state;

pub use state::{
    AggregatingStateDescriptor, KeyedState, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};

use std::marker::PhantomData;
use std::sync::Arc;

use floe_checkpoints::{assign_key_group, KeyGroup, KeyedStateBackend, StateData, StateKey, StateSnapshot};
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Result, RuntimeError, TaskInfo,
    TimerService, Timestamp, UserError, NO_TIMESTAMP,
};

use crate::collector::Collector;

/// Restores a keyed operator's state and timers from the checkpoint it is restored from, if
/// any, and arms its processing-time timers.
pub(crate) fn restore_keyed<K: StateKey, N: StateKey>(
    ctx: &mut OperatorContext,
    backend: &mut KeyedStateBackend<K>,
    timers: &mut TimerService<K, N>,
) -> Result<()> {
    if let Some(snapshot) = ctx.restored_state() {
        backend.restore(snapshot)?;
    }
    timers.open(backend, ctx.restored_state())?;
    if let Some(next) = timers.processing_time.next_timestamp()? {
        ctx.request_wakeup(next);
    }
    Ok(())
}

/// A keyed operator's part of a checkpoint: its state and timers per key group.
pub(crate) fn snapshot_keyed<K: StateKey, N: StateKey>(
    backend: Option<&mut KeyedStateBackend<K>>,
    timers: &mut TimerService<K, N>,
) -> Result<StateSnapshot> {
    let mut snapshot = StateSnapshot::default();
    // Timers first: with RocksDB they write their changes into the database checkpointed next.
    timers.snapshot_into(&mut snapshot)?;
    if let Some(b) = backend {
        b.snapshot(&mut snapshot)?;
    }
    Ok(snapshot)
}

/// The time domain a timer fired in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fired by the watermark.
    EventTime,
    /// Fired by the clock.
    ProcessingTime,
}

/// What a keyed function sees: the current key, its state, timers and time.
pub struct KeyedContext<'a, K> {
    state: KeyedState<'a, K>,
    timers: &'a mut TimerService<K, ()>,
    timestamp: Timestamp,
    domain: Option<TimeDomain>,
    ctx: &'a OperatorContext,
}

impl<'a, K: StateKey> KeyedContext<'a, K> {
    /// The key of the element (or timer) being processed.
    pub fn key(&self) -> &K {
        self.state.key
    }

    /// The state of the current key.
    pub fn state(&mut self) -> &mut KeyedState<'a, K> {
        &mut self.state
    }

    /// The element's event timestamp (or the firing timer's time), if any.
    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// In `on_timer`: which clock fired the timer.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The current event-time watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.ctx.current_watermark()
    }

    /// The current processing time (ms).
    pub fn processing_time(&self) -> Timestamp {
        self.ctx.processing_time()
    }

    /// Which subtask runs this function.
    pub fn task_info(&self) -> &TaskInfo {
        self.ctx.info()
    }

    /// Calls `on_timer` for this key once the watermark reaches `ts` (once per key and time).
    pub fn register_event_time_timer(&mut self, ts: Timestamp) {
        self.timers.event_time.register(ts, self.state.kg, self.state.key, &());
    }

    /// Deletes an event-time timer of this key.
    pub fn delete_event_time_timer(&mut self, ts: Timestamp) {
        self.timers.event_time.delete(ts, self.state.kg, self.state.key, &());
    }

    /// Calls `on_timer` for this key once processing time reaches `ts`.
    pub fn register_processing_time_timer(&mut self, ts: Timestamp) {
        self.timers
            .processing_time
            .register(ts, self.state.kg, self.state.key, &());
    }

    /// Deletes a processing-time timer of this key.
    pub fn delete_processing_time_timer(&mut self, ts: Timestamp) {
        self.timers
            .processing_time
            .delete(ts, self.state.kg, self.state.key, &());
    }
}

/// A function over a keyed stream with per-key state and timers.
///
/// Each subtask runs its own clone of the function; state lives in the subtask's keyed state
/// backend, never in the function's fields.
pub trait KeyedProcessFunction<K, I, O>: Send + 'static {
    /// Processes one element of key `ctx.key()`.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<O>,
    ) -> Result<(), UserError>;

    /// A timer registered for `ctx.key()` fired at `timestamp`.
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _ctx: &mut KeyedContext<'_, K>,
        _out: &mut Collector<O>,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`].
pub struct KeyedProcessOperator<K, I, O, P> {
    key_fn: Arc<dyn Fn(&I) -> K + Send + Sync>,
    function: P,
    backend: Option<KeyedStateBackend<K>>,
    timers: TimerService<K, ()>,
    out: Collector<O>,
    max_parallelism: u16,
    _t: PhantomData<fn(I)>,
}

impl<K: StateKey, I: Data, O: Data, P: KeyedProcessFunction<K, I, O>> KeyedProcessOperator<K, I, O, P> {
    /// Runs `function` on records keyed by `key_fn`.
    pub fn new(key_fn: Arc<dyn Fn(&I) -> K + Send + Sync>, function: P) -> Self {
        KeyedProcessOperator {
            key_fn,
            function,
            backend: None,
            timers: TimerService::default(),
            out: Collector::default(),
            max_parallelism: 1,
            _t: PhantomData,
        }
    }

    fn backend(&mut self) -> Result<&mut KeyedStateBackend<K>> {
        self.backend
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("keyed operator used before open".into()))
    }

    fn fire(&mut self, domain: TimeDomain, ts: Timestamp, kg: KeyGroup, key: K, ctx: &OperatorContext) -> Result<()> {
        self.out.set_timestamp(if domain == TimeDomain::EventTime {
            ts
        } else {
            NO_TIMESTAMP
        });
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("keyed operator used before open".into()))?;
        let mut kctx = KeyedContext {
            state: KeyedState { backend, kg, key: &key },
            timers: &mut self.timers,
            timestamp: ts,
            domain: Some(domain),
            ctx,
        };
        self.function
            .on_timer(ts, &mut kctx, &mut self.out)
            .map_err(RuntimeError::User)
    }

    fn arm_processing_timer(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        if let Some(next) = self.timers.processing_time.next_timestamp()? {
            ctx.request_wakeup(next);
        }
        Ok(())
    }
}

impl<K: StateKey, I: Data, O: Data, P: KeyedProcessFunction<K, I, O>> Operator for KeyedProcessOperator<K, I, O, P> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let info = ctx.info();
        self.max_parallelism = info.max_parallelism;
        let mut backend = info.keyed_state_backend()?;
        restore_keyed(ctx, &mut backend, &mut self.timers)?;
        self.backend = Some(backend);
        Ok(())
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        snapshot_keyed(self.backend.as_mut(), &mut self.timers)
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let now = ctx.processing_time();
        self.backend()?.set_processing_time(now)?;
        let had_processing_timers = self.timers.processing_time.generation();
        let backend = self
            .backend
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("keyed operator used before open".into()))?;
        for r in downcast_batch::<I>(batch)? {
            let key = (self.key_fn)(&r.value);
            let kg = assign_key_group(&key, self.max_parallelism);
            self.out.set_timestamp(r.timestamp);
            let mut kctx = KeyedContext {
                state: KeyedState { backend, kg, key: &key },
                timers: &mut self.timers,
                timestamp: r.timestamp,
                domain: None,
                ctx,
            };
            self.function
                .process_element(r.value, &mut kctx, &mut self.out)
                .map_err(RuntimeError::User)?;
        }
        self.timers.maintain()?;
        if self.timers.processing_time.generation() != had_processing_timers {
            self.arm_processing_timer(ctx)?;
        }
        self.out.flush(out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        let now = ctx.processing_time();
        self.backend()?.set_processing_time(now)?;
        while let Some((ts, kg, key, ())) = self.timers.event_time.pop_due(watermark)? {
            self.fire(TimeDomain::EventTime, ts, kg, key, ctx)?;
            if self.out.len() >= ctx.info().batch_size {
                self.out.flush(out)?;
            }
        }
        self.out.flush(out)?;
        self.arm_processing_timer(ctx)?;
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, now: Timestamp, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        self.backend()?.set_processing_time(now)?;
        while let Some((ts, kg, key, ())) = self.timers.processing_time.pop_due(now)? {
            self.fire(TimeDomain::ProcessingTime, ts, kg, key, ctx)?;
        }
        self.arm_processing_timer(ctx)?;
        self.out.flush(out)
    }
}

/// A keyed rolling reduce: emits the reduced value of the key after every element.
#[derive(Clone)]
pub struct RollingReduce<T, F> {
    reduce: Arc<F>,
    state: ValueStateDescriptor<T>,
}

impl<T, F> RollingReduce<T, F> {
    /// Reduces with `reduce`.
    pub fn new(reduce: Arc<F>) -> Self {
        RollingReduce {
            reduce,
            state: ValueStateDescriptor::new("rolling-reduce"),
        }
    }
}

impl<K: StateKey, T: StateData, F: Fn(&T, &T) -> T + Send + Sync + 'static> KeyedProcessFunction<K, T, T>
    for RollingReduce<T, F>
{
    fn process_element(
        &mut self,
        value: T,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<T>,
    ) -> Result<(), UserError> {
        let reduced = match ctx.state().get(&self.state)? {
            Some(acc) => (self.reduce)(&acc, &value),
            None => value,
        };
        ctx.state().set(&self.state, reduced.clone())?;
        out.collect(reduced);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
