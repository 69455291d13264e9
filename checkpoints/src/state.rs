//! Typed state handles and the traits state keys and values satisfy.
//!
//! A handle (`ValueState`, `ListState`, ...) is a small typed token returned when a state is
//! registered with a [`KeyedStateBackend`](crate::KeyedStateBackend); reads and writes go
//! through the backend with the current key, as in Flink where a state object is scoped to the
//! key of the element being processed.

use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a key (or a namespace, or a map key) of keyed state must be: hashable, comparable,
/// cloneable and serializable (state is snapshotted and may live in RocksDB).
pub trait StateKey: Hash + Eq + Clone + Debug + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Clone + Debug + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// What a value kept in keyed state must be.
pub trait StateData: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> StateData for T {}

/// The namespace of state that is not scoped to a window.
pub type VoidNamespace = ();

/// Time-to-live of keyed state entries, in processing time.
///
/// As Flink's default `StateTtlConfig`: the clock restarts when an entry is created or written;
/// an expired entry is never returned, and expired entries are purged in the background.
///
/// ```
/// use floe_checkpoints::StateTtl;
/// use std::time::Duration;
/// let ttl = StateTtl::new(Duration::from_secs(3600));
/// assert_eq!(ttl.millis(), 3_600_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtl {
    millis: i64,
}

impl StateTtl {
    /// Entries expire `ttl` after their last write.
    pub fn new(ttl: Duration) -> Self {
        StateTtl {
            millis: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1),
        }
    }

    /// The time to live in milliseconds.
    pub fn millis(&self) -> i64 {
        self.millis
    }
}

/// An incremental aggregation: events are added one at a time to an accumulator, two
/// accumulators can be merged (session windows need this), and a result is read at the end.
///
/// ```
/// use floe_checkpoints::AggregateFunction;
/// struct Average;
/// impl AggregateFunction<f64> for Average {
///     type Acc = (f64, u64);
///     type Out = f64;
///     fn create_accumulator(&self) -> (f64, u64) { (0.0, 0) }
///     fn add(&self, v: &f64, acc: &mut (f64, u64)) { acc.0 += v; acc.1 += 1; }
///     fn get_result(&self, acc: &(f64, u64)) -> f64 { acc.0 / acc.1 as f64 }
///     fn merge(&self, a: &mut (f64, u64), b: (f64, u64)) { a.0 += b.0; a.1 += b.1; }
/// }
/// let mut acc = Average.create_accumulator();
/// Average.add(&1.0, &mut acc);
/// Average.add(&3.0, &mut acc);
/// assert_eq!(Average.get_result(&acc), 2.0);
/// ```
pub trait AggregateFunction<T>: Send + Sync + 'static {
    /// The accumulator kept in state.
    type Acc: StateData;
    /// The result of the aggregation.
    type Out;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one event to the accumulator.
    fn add(&self, value: &T, acc: &mut Self::Acc);
    /// Reads the result.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    /// Merges accumulator `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
}

/// The function a [`ReducingState`] folds values with.
pub type ReduceFn<V> = Arc<dyn Fn(&V, &V) -> V + Send + Sync>;

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident < $($p:ident),* > $(, $extra:ident : $ety:ty)?) => {
        $(#[$doc])*
        pub struct $name<$($p),*, N = VoidNamespace> {
            pub(crate) id: usize,
            $(pub(crate) $extra: $ety,)?
            _types: PhantomData<fn() -> ($($p),*, N)>,
        }

        impl<$($p),*, N> $name<$($p),*, N> {
            #[allow(dead_code)]
            pub(crate) fn new(id: usize $(, $extra: $ety)?) -> Self {
                $name { id $(, $extra)?, _types: PhantomData }
            }
        }

        impl<$($p),*, N> Clone for $name<$($p),*, N> {
            fn clone(&self) -> Self {
                $name { id: self.id $(, $extra: self.$extra.clone())?, _types: PhantomData }
            }
        }

        impl<$($p),*, N> Debug for $name<$($p),*, N> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.id)
            }
        }
    };
}

handle!(
    /// A single value per key (and namespace).
    ValueState<V>
);
handle!(
    /// A list of values per key; appending does not read the list.
    ListState<V>
);
handle!(
    /// A map per key, from user keys `UK` to values `UV`.
    MapState<UK, UV>
);
handle!(
    /// A value per key that new values are folded into with a reduce function.
    ReducingState<V>, reduce: ReduceFn<V>
);

/// An accumulator per key that values are added to with an [`AggregateFunction`].
pub struct AggregatingState<T, F: AggregateFunction<T>, N = VoidNamespace> {
    pub(crate) id: usize,
    pub(crate) function: Arc<F>,
    _types: PhantomData<fn() -> (T, N)>,
}

impl<T, F: AggregateFunction<T>, N> AggregatingState<T, F, N> {
    pub(crate) fn new(id: usize, function: Arc<F>) -> Self {
        AggregatingState {
            id,
            function,
            _types: PhantomData,
        }
    }

    /// The aggregate function this state applies.
    pub fn function(&self) -> &F {
        &self.function
    }
}

impl<T, F: AggregateFunction<T>, N> Clone for AggregatingState<T, F, N> {
    fn clone(&self) -> Self {
        AggregatingState::new(self.id, self.function.clone())
    }
}

impl<T, F: AggregateFunction<T>, N> Debug for AggregatingState<T, F, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AggregatingState#{}", self.id)
    }
}
