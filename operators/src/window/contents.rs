//! What a window keeps and how it produces its result: an accumulator (`reduce`,
//! `aggregate`) or all the records (`process`).

use std::marker::PhantomData;
use std::sync::Arc;

use floe_checkpoints::{
    AggregateFunction, AggregatingState, KeyGroup, KeyedStateBackend, ListState, ReduceFn, StateData, StateKey,
};
use floe_runtime::{Data, Result, RuntimeError, UserError};

use super::{ProcessWindowFunction, TimeWindow};
use crate::collector::Collector;

/// The state of a window and the function that turns it into output.
pub(crate) trait Contents<K, T>: Send + 'static {
    /// What the window emits.
    type Out: Data;

    /// Registers the state with the subtask's backend.
    fn register(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<()>;

    /// Adds a record; returns whether the window had no state before.
    fn add(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow, v: &T) -> Result<bool>;

    /// Emits the window's current result.
    fn emit(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        w: &TimeWindow,
        out: &mut Collector<Self::Out>,
    ) -> Result<()>;

    /// Drops the window's state.
    fn clear(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow) -> Result<()>;

    /// Moves the state of `sources` into `target` (session windows merging).
    fn merge(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        sources: &[TimeWindow],
        target: &TimeWindow,
    ) -> Result<()>;
}

fn unregistered() -> RuntimeError {
    RuntimeError::Internal("window state used before open".into())
}

/// A reduce function as an aggregate function (the accumulator is the reduced value).
pub(crate) struct ReduceAggregate<T> {
    pub(crate) reduce: ReduceFn<T>,
}

impl<T: StateData> AggregateFunction<T> for ReduceAggregate<T> {
    type Acc = Option<T>;
    type Out = Option<T>;

    fn create_accumulator(&self) -> Option<T> {
        None
    }

    fn add(&self, value: &T, acc: &mut Option<T>) {
        *acc = Some(match acc.take() {
            Some(a) => (self.reduce)(&a, value),
            None => value.clone(),
        });
    }

    fn get_result(&self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }

    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(&o, acc);
        }
    }
}

type Finish<K, R, O> = Box<dyn Fn(&K, &TimeWindow, R, &mut Collector<O>) -> Result<(), UserError> + Send>;

/// An accumulator per window.
pub(crate) struct AggregateContents<K, T, A: AggregateFunction<T>, O> {
    agg: Arc<A>,
    handle: Option<AggregatingState<T, A, TimeWindow>>,
    finish: Finish<K, A::Out, O>,
    _t: PhantomData<fn(T)>,
}

impl<K, T, A: AggregateFunction<T>, O> AggregateContents<K, T, A, O> {
    pub(crate) fn new(
        agg: Arc<A>,
        finish: impl Fn(&K, &TimeWindow, A::Out, &mut Collector<O>) -> Result<(), UserError> + Send + 'static,
    ) -> Self {
        AggregateContents {
            agg,
            handle: None,
            finish: Box::new(finish),
            _t: PhantomData,
        }
    }
}

impl<K: StateKey, T: 'static, A: AggregateFunction<T>, O: Data> Contents<K, T> for AggregateContents<K, T, A, O> {
    type Out = O;

    fn register(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<()> {
        self.handle = Some(backend.aggregating_state("window-contents", None, self.agg.clone())?);
        Ok(())
    }

    fn add(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow, v: &T) -> Result<bool> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.aggregating_add(h, kg, key, w, v)?)
    }

    fn emit(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        w: &TimeWindow,
        out: &mut Collector<O>,
    ) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        if let Some(result) = b.aggregating_get(h, kg, key, w)? {
            (self.finish)(key, w, result, out).map_err(RuntimeError::User)?;
        }
        Ok(())
    }

    fn clear(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.aggregating_clear(h, kg, key, w)?)
    }

    fn merge(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        sources: &[TimeWindow],
        target: &TimeWindow,
    ) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.aggregating_merge(h, kg, key, sources, target)?)
    }
}

/// All records per window, for a full-window function.
pub(crate) struct ListContents<K, T, O> {
    handle: Option<ListState<T, TimeWindow>>,
    f: Box<dyn ProcessWindowFunction<K, T, O>>,
}

impl<K, T, O> ListContents<K, T, O> {
    pub(crate) fn new(f: Box<dyn ProcessWindowFunction<K, T, O>>) -> Self {
        ListContents { handle: None, f }
    }
}

impl<K: StateKey, T: StateData, O: Data> Contents<K, T> for ListContents<K, T, O> {
    type Out = O;

    fn register(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<()> {
        self.handle = Some(backend.list_state("window-contents", None)?);
        Ok(())
    }

    fn add(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow, v: &T) -> Result<bool> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.list_add(h, kg, key, w, v.clone())?)
    }

    fn emit(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        w: &TimeWindow,
        out: &mut Collector<O>,
    ) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        let elements = b.list_get(h, kg, key, w)?;
        if elements.is_empty() {
            return Ok(());
        }
        self.f.process(key, w, &elements, out).map_err(RuntimeError::User)
    }

    fn clear(&mut self, b: &mut KeyedStateBackend<K>, kg: KeyGroup, key: &K, w: &TimeWindow) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.list_clear(h, kg, key, w)?)
    }

    fn merge(
        &mut self,
        b: &mut KeyedStateBackend<K>,
        kg: KeyGroup,
        key: &K,
        sources: &[TimeWindow],
        target: &TimeWindow,
    ) -> Result<()> {
        let h = self.handle.as_ref().ok_or_else(unregistered)?;
        Ok(b.list_merge(h, kg, key, sources, target)?)
    }
}
