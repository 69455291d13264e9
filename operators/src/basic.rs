//! Stateless record-at-a-time transformations: map, filter, flat_map, and the identity
//! operator that merges the inputs of a union.
//!
//! Each works on a whole batch: one downcast and at most one allocation per batch.

use std::marker::PhantomData;
use std::sync::Arc;

use floe_runtime::{downcast_batch, Batch, Data, Operator, OperatorContext, Output, Record, Result};

/// Applies a function to every record.
pub struct MapOperator<I, O, F> {
    f: Arc<F>,
    _t: PhantomData<fn(I) -> O>,
}

impl<I, O, F> MapOperator<I, O, F> {
    /// Maps with `f`.
    pub fn new(f: Arc<F>) -> Self {
        MapOperator { f, _t: PhantomData }
    }
}

impl<I: Data, O: Data, F: Fn(I) -> O + Send + Sync + 'static> Operator for MapOperator<I, O, F> {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let records = downcast_batch::<I>(batch)?;
        let f = &*self.f;
        let mapped: Vec<Record<O>> = records
            .into_iter()
            .map(|r| Record::new(f(r.value), r.timestamp))
            .collect();
        out.emit(Box::new(mapped))
    }
}

/// Keeps the records a predicate accepts (in place: no allocation).
pub struct FilterOperator<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> FilterOperator<T, F> {
    /// Filters with `f`.
    pub fn new(f: Arc<F>) -> Self {
        FilterOperator { f, _t: PhantomData }
    }
}

impl<T: Data, F: Fn(&T) -> bool + Send + Sync + 'static> Operator for FilterOperator<T, F> {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let mut records = downcast_batch::<T>(batch)?;
        let f = &*self.f;
        records.retain(|r| f(&r.value));
        out.emit(Box::new(records))
    }
}

/// Turns every record into zero or more records.
pub struct FlatMapOperator<I, O, F> {
    f: Arc<F>,
    _t: PhantomData<fn(I) -> O>,
}

impl<I, O, F> FlatMapOperator<I, O, F> {
    /// Flat-maps with `f`.
    pub fn new(f: Arc<F>) -> Self {
        FlatMapOperator { f, _t: PhantomData }
    }
}

impl<I: Data, O: Data, It, F> Operator for FlatMapOperator<I, O, F>
where
    It: IntoIterator<Item = O>,
    F: Fn(I) -> It + Send + Sync + 'static,
{
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let records = downcast_batch::<I>(batch)?;
        let f = &*self.f;
        let mut produced = Vec::with_capacity(records.len());
        for r in records {
            let ts = r.timestamp;
            produced.extend(f(r.value).into_iter().map(|v| Record::new(v, ts)));
        }
        out.emit(Box::new(produced))
    }
}

/// Passes batches through untouched: the node where the inputs of a union meet.
#[derive(Default)]
pub struct IdentityOperator;

impl Operator for IdentityOperator {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        out.emit(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::TaskInfo;

    fn harness(op: Box<dyn Operator>) -> OperatorHarness {
        OperatorHarness::new(op, TaskInfo::new("t", "op", 0, 1, 128), 0).unwrap()
    }

    #[test]
    fn map_filter_flat_map_keep_timestamps() {
        let mut h = harness(Box::new(MapOperator::new(Arc::new(|x: i32| x * 10))));
        h.process(vec![Record::new(1, 5), Record::new(2, 6)]).unwrap();
        assert_eq!(
            h.take_output::<i32>().unwrap(),
            vec![Record::new(10, 5), Record::new(20, 6)]
        );

        let mut h = harness(Box::new(FilterOperator::new(Arc::new(|x: &i32| x % 2 == 0))));
        h.process(vec![Record::new(1, 1), Record::new(2, 2), Record::new(4, 3)])
            .unwrap();
        assert_eq!(h.take_values::<i32>().unwrap(), vec![2, 4]);

        let mut h = harness(Box::new(FlatMapOperator::new(Arc::new(|s: String| {
            s.split(' ').map(str::to_string).collect::<Vec<_>>()
        }))));
        h.process(vec![Record::new("a b".to_string(), 9)]).unwrap();
        assert_eq!(
            h.take_output::<String>().unwrap(),
            vec![Record::new("a".to_string(), 9), Record::new("b".to_string(), 9)]
        );
    }
}
