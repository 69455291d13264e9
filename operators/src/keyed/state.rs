//! State descriptors and the accessors a keyed function uses to read and write its state for
//! the current key.
//!
//! A descriptor names a state; the first access registers it with the subtask's backend and
//! remembers the handle, so later accesses cost no lookup by name.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::{
    AggregateFunction, AggregatingState, KeyGroup, KeyedStateBackend, ListState, MapState, ReduceFn, ReducingState,
    Result as StateResult, StateData, StateKey, StateTtl, ValueState,
};
use floe_runtime::UserError;

macro_rules! descriptor_common {
    ($name:ident < $($p:ident),* >) => {
        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                // A clone belongs to another subtask: it registers with that subtask's backend.
                $name { name: self.name.clone(), ttl: self.ttl, handle: OnceCell::new() }
            }
        }

        impl<$($p),*> $name<$($p),*> {
            /// A descriptor for the state called `name`.
            pub fn new(name: &str) -> Self {
                $name { name: name.to_string(), ttl: None, handle: OnceCell::new() }
            }

            /// Entries expire `ttl` after their last write.
            pub fn with_ttl(mut self, ttl: Duration) -> Self {
                self.ttl = Some(StateTtl::new(ttl));
                self
            }

            /// The state's name.
            pub fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// Describes a [`ValueState`]: one value per key.
///
/// ```
/// use floe_operators::keyed::ValueStateDescriptor;
/// let count: ValueStateDescriptor<u64> = ValueStateDescriptor::new("count");
/// assert_eq!(count.name(), "count");
/// ```
pub struct ValueStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtl>,
    handle: OnceCell<ValueState<V>>,
}
descriptor_common!(ValueStateDescriptor<V>);

/// Describes a [`ListState`]: a list per key.
///
/// ```
/// use floe_operators::keyed::ListStateDescriptor;
/// let seen: ListStateDescriptor<String> = ListStateDescriptor::new("seen");
/// assert_eq!(seen.name(), "seen");
/// ```
pub struct ListStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtl>,
    handle: OnceCell<ListState<V>>,
}
descriptor_common!(ListStateDescriptor<V>);

/// Describes a [`MapState`]: a map per key.
///
/// ```
/// use floe_operators::keyed::MapStateDescriptor;
/// let by_merchant: MapStateDescriptor<String, u64> = MapStateDescriptor::new("by-merchant");
/// assert_eq!(by_merchant.name(), "by-merchant");
/// ```
pub struct MapStateDescriptor<UK, UV> {
    name: String,
    ttl: Option<StateTtl>,
    handle: OnceCell<MapState<UK, UV>>,
}
descriptor_common!(MapStateDescriptor<UK, UV>);

/// Describes a reducing state: values are folded into one per key with a function.
///
/// ```
/// use floe_operators::keyed::ReducingStateDescriptor;
/// let max = ReducingStateDescriptor::new("max", |a: &i64, b: &i64| *a.max(b));
/// assert_eq!(max.name(), "max");
/// ```
pub struct ReducingStateDescriptor<V> {
    name: String,
    ttl: Option<StateTtl>,
    reduce: ReduceFn<V>,
    handle: OnceCell<ReducingState<V>>,
}

impl<V> Clone for ReducingStateDescriptor<V> {
    fn clone(&self) -> Self {
        ReducingStateDescriptor {
            name: self.name.clone(),
            ttl: self.ttl,
            reduce: self.reduce.clone(),
            handle: OnceCell::new(),
        }
    }
}

impl<V> ReducingStateDescriptor<V> {
    /// A descriptor for the state `name` folding values with `reduce`.
    pub fn new(name: &str, reduce: impl Fn(&V, &V) -> V + Send + Sync + 'static) -> Self {
        ReducingStateDescriptor {
            name: name.to_string(),
            ttl: None,
            reduce: Arc::new(reduce),
            handle: OnceCell::new(),
        }
    }

    /// Entries expire `ttl` after their last write.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(StateTtl::new(ttl));
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Describes an aggregating state: values are added to an accumulator per key.
///
/// ```
/// use floe_operators::keyed::AggregatingStateDescriptor;
/// use floe_operators::aggregate::Count;
/// let d: AggregatingStateDescriptor<u32, Count> = AggregatingStateDescriptor::new("n", Count);
/// assert_eq!(d.name(), "n");
/// ```
pub struct AggregatingStateDescriptor<T, F: AggregateFunction<T>> {
    name: String,
    ttl: Option<StateTtl>,
    function: Arc<F>,
    handle: OnceCell<AggregatingState<T, F>>,
}

impl<T, F: AggregateFunction<T>> Clone for AggregatingStateDescriptor<T, F> {
    fn clone(&self) -> Self {
        AggregatingStateDescriptor {
            name: self.name.clone(),
            ttl: self.ttl,
            function: self.function.clone(),
            handle: OnceCell::new(),
        }
    }
}

impl<T, F: AggregateFunction<T>> AggregatingStateDescriptor<T, F> {
    /// A descriptor for the state `name` aggregating with `function`.
    pub fn new(name: &str, function: F) -> Self {
        AggregatingStateDescriptor {
            name: name.to_string(),
            ttl: None,
            function: Arc::new(function),
            handle: OnceCell::new(),
        }
    }

    /// Entries expire `ttl` after their last write.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(StateTtl::new(ttl));
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn handle<H: Clone>(cell: &OnceCell<H>, register: impl FnOnce() -> StateResult<H>) -> Result<&H, UserError> {
    if let Some(h) = cell.get() {
        return Ok(h);
    }
    let h = register()?;
    Ok(cell.get_or_init(|| h))
}

/// The state of the current key, as a keyed function sees it.
pub struct KeyedState<'a, K> {
    pub(crate) backend: &'a mut KeyedStateBackend<K>,
    pub(crate) kg: KeyGroup,
    pub(crate) key: &'a K,
}

impl<K: StateKey> KeyedState<'_, K> {
    /// Reads the value state `d`.
    pub fn get<V: StateData>(&mut self, d: &ValueStateDescriptor<V>) -> Result<Option<V>, UserError> {
        let h = handle(&d.handle, || self.backend.value_state(&d.name, d.ttl))?;
        Ok(self.backend.value_get(h, self.kg, self.key, &())?)
    }

    /// Writes the value state `d`.
    pub fn set<V: StateData>(&mut self, d: &ValueStateDescriptor<V>, value: V) -> Result<(), UserError> {
        let h = handle(&d.handle, || self.backend.value_state(&d.name, d.ttl))?;
        Ok(self.backend.value_set(h, self.kg, self.key, &(), value)?)
    }

    /// Updates the value state `d` in place, starting from `init()` if it is empty.
    pub fn update<V: StateData, R>(
        &mut self,
        d: &ValueStateDescriptor<V>,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R, UserError> {
        let h = handle(&d.handle, || self.backend.value_state(&d.name, d.ttl))?;
        Ok(self.backend.value_update(h, self.kg, self.key, &(), init, f)?)
    }

    /// Clears the value state `d`.
    pub fn clear<V: StateData>(&mut self, d: &ValueStateDescriptor<V>) -> Result<(), UserError> {
        let h = handle(&d.handle, || self.backend.value_state(&d.name, d.ttl))?;
        Ok(self.backend.value_clear(h, self.kg, self.key, &())?)
    }

    /// Appends to the list state `d`.
    pub fn list_add<V: StateData>(&mut self, d: &ListStateDescriptor<V>, value: V) -> Result<(), UserError> {
        let h = handle(&d.handle, || self.backend.list_state(&d.name, d.ttl))?;
        self.backend.list_add(h, self.kg, self.key, &(), value)?;
        Ok(())
    }

    /// Reads the list state `d`.
    pub fn list_get<V: StateData>(&mut self, d: &ListStateDescriptor<V>) -> Result<Vec<V>, UserError> {
        let h = handle(&d.handle, || self.backend.list_state(&d.name, d.ttl))?;
        Ok(self.backend.list_get(h, self.kg, self.key, &())?)
    }

    /// Replaces the list state `d` (an empty list clears it).
    pub fn list_replace<V: StateData>(&mut self, d: &ListStateDescriptor<V>, values: Vec<V>) -> Result<(), UserError> {
        let h = handle(&d.handle, || self.backend.list_state(&d.name, d.ttl))?;
        Ok(self.backend.list_replace(h, self.kg, self.key, &(), values)?)
    }

    /// Reads one entry of the map state `d`.
    pub fn map_get<UK: StateKey, UV: StateData>(
        &mut self,
        d: &MapStateDescriptor<UK, UV>,
        uk: &UK,
    ) -> Result<Option<UV>, UserError> {
        let h = handle(&d.handle, || self.backend.map_state(&d.name, d.ttl))?;
        Ok(self.backend.map_get(h, self.kg, self.key, &(), uk)?)
    }

    /// Writes one entry of the map state `d`.
    pub fn map_put<UK: StateKey, UV: StateData>(
        &mut self,
        d: &MapStateDescriptor<UK, UV>,
        uk: UK,
        uv: UV,
    ) -> Result<(), UserError> {
        let h = handle(&d.handle, || self.backend.map_state(&d.name, d.ttl))?;
        Ok(self.backend.map_put(h, self.kg, self.key, &(), uk, uv)?)
    }

    /// Removes one entry of the map state `d`.
    pub fn map_remove<UK: StateKey, UV: StateData>(
        &mut self,
        d: &MapStateDescriptor<UK, UV>,
        uk: &UK,
    ) -> Result<Option<UV>, UserError> {
        let h = handle(&d.handle, || self.backend.map_state(&d.name, d.ttl))?;
        Ok(self.backend.map_remove(h, self.kg, self.key, &(), uk)?)
    }

    /// All entries of the map state `d`.
    pub fn map_entries<UK: StateKey, UV: StateData>(
        &mut self,
        d: &MapStateDescriptor<UK, UV>,
    ) -> Result<Vec<(UK, UV)>, UserError> {
        let h = handle(&d.handle, || self.backend.map_state(&d.name, d.ttl))?;
        Ok(self.backend.map_entries(h, self.kg, self.key, &())?)
    }

    /// Folds `value` into the reducing state `d`.
    pub fn reduce_add<V: StateData>(&mut self, d: &ReducingStateDescriptor<V>, value: V) -> Result<(), UserError> {
        let reduce = d.reduce.clone();
        let h = handle(&d.handle, || {
            self.backend.reducing_state(&d.name, d.ttl, move |a, b| reduce(a, b))
        })?;
        Ok(self.backend.reducing_add(h, self.kg, self.key, &(), value)?)
    }

    /// Reads the reducing state `d`.
    pub fn reduce_get<V: StateData>(&mut self, d: &ReducingStateDescriptor<V>) -> Result<Option<V>, UserError> {
        let reduce = d.reduce.clone();
        let h = handle(&d.handle, || {
            self.backend.reducing_state(&d.name, d.ttl, move |a, b| reduce(a, b))
        })?;
        Ok(self.backend.reducing_get(h, self.kg, self.key, &())?)
    }

    /// Adds `value` to the aggregating state `d`.
    pub fn aggregate_add<T, F: AggregateFunction<T>>(
        &mut self,
        d: &AggregatingStateDescriptor<T, F>,
        value: &T,
    ) -> Result<(), UserError> {
        let h = handle(&d.handle, || {
            self.backend.aggregating_state(&d.name, d.ttl, d.function.clone())
        })?;
        self.backend.aggregating_add(h, self.kg, self.key, &(), value)?;
        Ok(())
    }

    /// Reads the result of the aggregating state `d`.
    pub fn aggregate_get<T, F: AggregateFunction<T>>(
        &mut self,
        d: &AggregatingStateDescriptor<T, F>,
    ) -> Result<Option<F::Out>, UserError> {
        let h = handle(&d.handle, || {
            self.backend.aggregating_state(&d.name, d.ttl, d.function.clone())
        })?;
        Ok(self.backend.aggregating_get(h, self.kg, self.key, &())?)
    }

    /// Clears the aggregating state `d`.
    pub fn aggregate_clear<T, F: AggregateFunction<T>>(
        &mut self,
        d: &AggregatingStateDescriptor<T, F>,
    ) -> Result<(), UserError> {
        let h = handle(&d.handle, || {
            self.backend.aggregating_state(&d.name, d.ttl, d.function.clone())
        })?;
        Ok(self.backend.aggregating_clear(h, self.kg, self.key, &())?)
    }
}
