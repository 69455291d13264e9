//! Ready-made aggregate functions for windows and aggregating state.

use std::marker::PhantomData;
use std::ops::Add;

use floe_checkpoints::{AggregateFunction, StateData};

/// Counts elements.
///
/// ```
/// use floe_operators::aggregate::Count;
/// use floe_checkpoints::AggregateFunction;
/// let mut acc = AggregateFunction::<&str>::create_accumulator(&Count);
/// Count.add(&"x", &mut acc);
/// Count.add(&"y", &mut acc);
/// assert_eq!(AggregateFunction::<&str>::get_result(&Count, &acc), 2);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;

    fn create_accumulator(&self) -> u64 {
        0
    }

    fn add(&self, _value: &T, acc: &mut u64) {
        *acc += 1;
    }

    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }

    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
}

/// Sums a numeric field of the elements.
///
/// ```
/// use floe_operators::aggregate::Sum;
/// use floe_checkpoints::AggregateFunction;
/// let sum = Sum::of(|p: &(u32, f64)| p.1);
/// let mut acc = sum.create_accumulator();
/// sum.add(&(1, 2.5), &mut acc);
/// sum.add(&(2, 1.0), &mut acc);
/// assert_eq!(sum.get_result(&acc), 3.5);
/// ```
pub struct Sum<T, N, F> {
    field: F,
    _t: PhantomData<fn(&T) -> N>,
}

impl<T, N, F: Fn(&T) -> N> Sum<T, N, F> {
    /// Sums `field` of every element.
    pub fn of(field: F) -> Self {
        Sum { field, _t: PhantomData }
    }
}

impl<T: 'static, N, F> AggregateFunction<T> for Sum<T, N, F>
where
    N: StateData + Default + Add<Output = N> + Copy + Sync,
    F: Fn(&T) -> N + Send + Sync + 'static,
{
    type Acc = N;
    type Out = N;

    fn create_accumulator(&self) -> N {
        N::default()
    }

    fn add(&self, value: &T, acc: &mut N) {
        *acc = *acc + (self.field)(value);
    }

    fn get_result(&self, acc: &N) -> N {
        *acc
    }

    fn merge(&self, acc: &mut N, other: N) {
        *acc = *acc + other;
    }
}

/// The largest value of a field of the elements.
///
/// ```
/// use floe_operators::aggregate::Max;
/// use floe_checkpoints::AggregateFunction;
/// let max = Max::of(|v: &i64| *v);
/// let mut acc = max.create_accumulator();
/// for v in [3, 9, 4] { max.add(&v, &mut acc); }
/// assert_eq!(max.get_result(&acc), Some(9));
/// ```
pub struct Max<T, N, F> {
    field: F,
    _t: PhantomData<fn(&T) -> N>,
}

impl<T, N, F: Fn(&T) -> N> Max<T, N, F> {
    /// The maximum of `field`.
    pub fn of(field: F) -> Self {
        Max { field, _t: PhantomData }
    }
}

impl<T: 'static, N, F> AggregateFunction<T> for Max<T, N, F>
where
    N: StateData + PartialOrd + Sync,
    F: Fn(&T) -> N + Send + Sync + 'static,
{
    type Acc = Option<N>;
    type Out = Option<N>;

    fn create_accumulator(&self) -> Option<N> {
        None
    }

    fn add(&self, value: &T, acc: &mut Option<N>) {
        let v = (self.field)(value);
        if acc.as_ref().is_none_or(|a| v > *a) {
            *acc = Some(v);
        }
    }

    fn get_result(&self, acc: &Option<N>) -> Option<N> {
        acc.clone()
    }

    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(o) = other {
            if acc.as_ref().is_none_or(|a| o > *a) {
                *acc = Some(o);
            }
        }
    }
}
