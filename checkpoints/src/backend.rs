//! The keyed state backend of one operator subtask.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Result, StateError};
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::map_table::MapTable;
use crate::memory::{AnyTable, Table, NEVER};
use crate::rocks::{read_native, DbDir, TimerColumn};
use crate::snapshot::StateSnapshot;
use crate::state::{
    AggregateFunction, AggregatingState, ListState, MapState, ReducingState, StateData, StateKey, StateTtl, ValueState,
};

/// Which backend stores keyed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    /// Objects on the heap: fastest, bounded by memory.
    #[default]
    Memory,
    /// RocksDB in `dir` (a working copy; durability comes from checkpoints), with a
    /// write-back cache of at most `cache_entries` entries per state in front of it.
    /// Snapshots are incremental: a checkpoint uploads only the SST files that are new.
    RocksDb {
        /// Directory of the database.
        dir: std::path::PathBuf,
        /// Entries per state kept on the heap before they are written out and evicted.
        cache_entries: usize,
        /// Bytes of RocksDB's block cache (uncompressed blocks read from SST files).
        block_cache_bytes: usize,
    },
}

/// A directory of its own under the system's temporary directory, for a heap backend that
/// reads a RocksDB snapshot.
fn scratch_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("floe-restore-{}-{nanos:x}", std::process::id()))
}

/// Prefix of the snapshot blobs of keyed states.
const STATE_PREFIX: &str = "state/";

/// A map state's table, the current time and the state's TTL (ms).
type MapAccess<'a, K, N, UK, UV> = (&'a mut MapTable<K, N, UK, UV>, i64, Option<i64>);

/// A state's table, the current time and the state's TTL (ms).
type TableAccess<'a, K, N, S> = (&'a mut Table<K, N, S>, i64, Option<i64>);

struct Registered {
    name: String,
    type_id: TypeId,
    ttl: Option<StateTtl>,
    table: Box<dyn AnyTable>,
}

/// The keyed state of one operator subtask, for keys of type `K`.
///
/// States are registered by name and return typed handles; every access names the key group,
/// the key and the namespace it is scoped to; operators compute the key group once per record
/// and bind it with the key for the user's function.
///
/// ```
/// use floe_checkpoints::{KeyedStateBackend, KeyGroupRange, StateBackendKind, assign_key_group};
/// let mut backend: KeyedStateBackend<String> =
///     KeyedStateBackend::new(StateBackendKind::Memory, 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
/// let count = backend.value_state::<u64, ()>("count", None).unwrap();
/// let key = "alice".to_string();
/// let kg = assign_key_group(&key, 128);
/// backend.value_set(&count, kg, &key, &(), 5).unwrap();
/// assert_eq!(backend.value_get(&count, kg, &key, &()).unwrap(), Some(5));
/// ```
pub struct KeyedStateBackend<K> {
    kind: StateBackendKind,
    max_parallelism: u16,
    range: KeyGroupRange,
    now: i64,
    next_purge: i64,
    states: Vec<Registered>,
    /// Restored entries of states not registered yet, by state name: they are decoded when
    /// the state is registered and its types are known.
    pending: HashMap<String, Vec<(KeyGroup, Vec<u8>, bool)>>,
    /// The RocksDB database, if the backend is RocksDB (its directory goes with it).
    db: Option<DbDir>,
    /// Column families of timer queues (flushed with the states at a snapshot).
    timer_columns: Vec<String>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K: StateKey> KeyedStateBackend<K> {
    /// A backend for the key groups in `range` (for RocksDB, a fresh database in its
    /// directory).
    pub fn new(kind: StateBackendKind, max_parallelism: u16, range: KeyGroupRange) -> Result<Self> {
        let db = match &kind {
            StateBackendKind::Memory => None,
            StateBackendKind::RocksDb {
                dir, block_cache_bytes, ..
            } => Some(DbDir::open(dir, *block_cache_bytes)?),
        };
        Ok(KeyedStateBackend {
            db,
            timer_columns: Vec::new(),
            kind,
            max_parallelism,
            range,
            now: 0,
            next_purge: NEVER,
            states: Vec::new(),
            pending: HashMap::new(),
            _key: std::marker::PhantomData,
        })
    }

    /// The backend kind.
    pub fn kind(&self) -> &StateBackendKind {
        &self.kind
    }

    /// The number of key groups in the job.
    pub fn max_parallelism(&self) -> u16 {
        self.max_parallelism
    }

    /// The key groups this backend holds.
    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// Sets the processing time (ms) that TTL is measured against; purges expired entries
    /// once per shortest TTL so keys that are never read again do not leak; with RocksDB,
    /// writes out (in one write batch per state) and evicts caches that outgrew their bound.
    /// Operators call it once per batch.
    pub fn set_processing_time(&mut self, now: i64) -> Result<()> {
        self.now = now;
        if now >= self.next_purge {
            let now = self.now;
            for s in &mut self.states {
                if s.ttl.is_some() {
                    s.table.purge_expired(now)?;
                }
            }
            self.next_purge = self.min_ttl().map_or(NEVER, |t| now.saturating_add(t));
        }
        if let StateBackendKind::RocksDb { cache_entries, .. } = self.kind {
            for s in &mut self.states {
                s.table.flush(cache_entries, false)?;
            }
        }
        Ok(())
    }

    fn min_ttl(&self) -> Option<i64> {
        self.states.iter().filter_map(|s| s.ttl.map(|t| t.millis())).min()
    }

    /// Number of entries stored across all states (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.states.iter().map(|s| s.table.len()).sum()
    }

    /// Whether no state holds any entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the state to `snapshot`: on the heap, every live entry per key group (blobs named
    /// `state/<name>`); with RocksDB, the caches are written out and the database's files are
    /// checkpointed locally (hard links), for checkpoint storage to upload what it lacks.
    pub fn snapshot(&mut self, snapshot: &mut StateSnapshot) -> Result<()> {
        if let Some(db) = &mut self.db {
            for s in &mut self.states {
                s.table.flush(usize::MAX, true)?;
            }
            let names: Vec<&str> = self
                .states
                .iter()
                .map(|s| s.name.as_str())
                .chain(self.timer_columns.iter().map(String::as_str))
                .collect();
            snapshot.native.push(db.checkpoint(&names, self.range)?);
            return Ok(());
        }
        for s in &mut self.states {
            for kg in self.range.start..self.range.end {
                if let Some(bytes) = s.table.snapshot_group(kg, self.now)? {
                    snapshot.add_keyed(kg, &format!("{STATE_PREFIX}{}", s.name), bytes);
                }
            }
        }
        Ok(())
    }

    /// Loads the entries of the key groups of this backend from `snapshot` (which may hold
    /// more key groups: a snapshot taken at another parallelism). A RocksDB snapshot of
    /// exactly this range is restored by linking its files into the database; otherwise the
    /// key groups of this range are read out of the old databases, whichever backend this is.
    pub fn restore(&mut self, snapshot: &StateSnapshot) -> Result<()> {
        for (kg, blobs) in snapshot.key_groups.range(self.range.start..self.range.end) {
            for (name, bytes) in blobs {
                if let Some(state) = name.strip_prefix(STATE_PREFIX) {
                    self.restore_blob(state, *kg, bytes.clone(), false)?;
                }
            }
        }
        let whole = matches!(&snapshot.native[..], [n] if n.range == self.range)
            && self.states.is_empty()
            && self.timer_columns.is_empty();
        if let (Some(db), true) = (&mut self.db, whole) {
            return db.install(&snapshot.native[0]);
        }
        for native in &snapshot.native {
            let scratch = match &self.db {
                Some(db) => db.scratch(),
                None => scratch_dir(),
            };
            for (state, kg, blob) in read_native(native, &scratch, self.range)? {
                self.restore_blob(&state, kg, blob, true)?;
            }
        }
        Ok(())
    }

    /// The RocksDB column family of the timer queue `name` (created if missing), or `None`
    /// for the heap backend. Timer queues keep their timers there beyond a cache of the
    /// earliest ones, and write them before [`KeyedStateBackend::snapshot`] so that they are
    /// part of the database's checkpoint. Ask for it after [`KeyedStateBackend::restore`].
    pub fn timer_column(&mut self, name: &str) -> Result<Option<TimerColumn>> {
        let Some(db) = &self.db else { return Ok(None) };
        let column = db.timers(name)?;
        if !self.timer_columns.iter().any(|n| n == name) {
            self.timer_columns.push(name.to_string());
        }
        Ok(Some(column))
    }

    /// Restored blobs of `name` that no state claimed: the timers of a timer queue read out
    /// of RocksDB snapshots (as `count (u64, little endian)` followed by each timer's key after
    /// its key-group bytes), for the queue to register.
    pub fn take_restored(&mut self, name: &str) -> Vec<(KeyGroup, Vec<u8>)> {
        self.pending
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .map(|(kg, bytes, _)| (kg, bytes))
            .collect()
    }

    /// Entries kept on the heap per state (and timers per queue) in front of RocksDB; `None`
    /// for the heap backend.
    pub fn cache_entries(&self) -> Option<usize> {
        match self.kind {
            StateBackendKind::RocksDb { cache_entries, .. } => Some(cache_entries),
            StateBackendKind::Memory => None,
        }
    }

    /// Restores a blob of heap format, or read out of a RocksDB snapshot (`native`).
    fn restore_blob(&mut self, state: &str, kg: KeyGroup, bytes: Vec<u8>, native: bool) -> Result<()> {
        match self.states.iter_mut().find(|s| s.name == state) {
            Some(s) => s.table.restore_group(kg, &bytes, native),
            None => {
                self.pending
                    .entry(state.to_string())
                    .or_default()
                    .push((kg, bytes, native));
                Ok(())
            }
        }
    }

    fn register<N: StateKey, S: StateData>(&mut self, name: &str, ttl: Option<StateTtl>) -> Result<usize> {
        self.register_with(name, ttl, |range, db| {
            let store = db.map(|db| db.store(name)).transpose()?;
            Ok(Table::<K, N, S>::new(range, store))
        })
    }

    /// Registers state `name` whose table `make` builds (from the key-group range and the
    /// database, if any), or finds it if it exists with the same table type.
    fn register_with<T: AnyTable + 'static>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
        make: impl FnOnce(KeyGroupRange, Option<&DbDir>) -> Result<T>,
    ) -> Result<usize> {
        let type_id = TypeId::of::<T>();
        if let Some(i) = self.states.iter().position(|s| s.name == name) {
            if self.states[i].type_id != type_id {
                return Err(StateError::TypeMismatch { name: name.to_string() });
            }
            return Ok(i);
        }
        let mut table = make(self.range, self.db.as_ref())?;
        for (kg, bytes, native) in self.pending.remove(name).unwrap_or_default() {
            table.restore_group(kg, &bytes, native)?;
        }
        self.states.push(Registered {
            name: name.to_string(),
            type_id,
            ttl,
            table: Box::new(table),
        });
        if let Some(t) = ttl {
            self.next_purge = self.next_purge.min(self.now.saturating_add(t.millis()));
        }
        Ok(self.states.len() - 1)
    }

    fn map_table<N: StateKey, UK: StateKey, UV: StateData>(
        &mut self,
        id: usize,
    ) -> Result<MapAccess<'_, K, N, UK, UV>> {
        self.access::<MapTable<K, N, UK, UV>>(id)
    }

    fn table<N: StateKey, S: Send + 'static>(&mut self, id: usize) -> Result<TableAccess<'_, K, N, S>> {
        self.access::<Table<K, N, S>>(id)
    }

    /// The table of state `id` as a `T`, the current time and the state's TTL (ms).
    fn access<T: 'static>(&mut self, id: usize) -> Result<(&mut T, i64, Option<i64>)> {
        let now = self.now;
        let s = self.states.get_mut(id).ok_or(StateError::UnknownHandle(id))?;
        let ttl = s.ttl.map(|t| t.millis());
        let t = s
            .table
            .as_any_mut()
            .downcast_mut::<T>()
            .ok_or(StateError::UnknownHandle(id))?;
        Ok((t, now, ttl))
    }

    fn check(&self, kg: KeyGroup) -> Result<()> {
        if self.range.contains(kg) {
            Ok(())
        } else {
            Err(StateError::ForeignKeyGroup {
                key_group: kg,
                range: self.range.to_string(),
            })
        }
    }

    // ---- registration ----

    /// Registers (or finds) a value state.
    pub fn value_state<V: StateData, N: StateKey>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ValueState<V, N>> {
        Ok(ValueState::new(self.register::<N, V>(name, ttl)?))
    }

    /// Registers (or finds) a list state.
    pub fn list_state<V: StateData, N: StateKey>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<ListState<V, N>> {
        let id = self.register_with(name, ttl, |range, db| {
            let store = db.map(|db| db.store(name)).transpose()?;
            Ok(
                Table::<K, N, Vec<V>>::new(range, store).appendable(|mut stored, mut appended| {
                    stored.append(&mut appended);
                    stored
                }),
            )
        })?;
        Ok(ListState::new(id))
    }

    /// Registers (or finds) a map state.
    pub fn map_state<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
    ) -> Result<MapState<UK, UV, N>> {
        let id = self.register_with(name, ttl, |range, db| {
            let store = db.map(|db| db.store(name)).transpose()?;
            Ok(MapTable::<K, N, UK, UV>::new(range, store))
        })?;
        Ok(MapState::new(id))
    }

    /// Registers (or finds) a reducing state folding values with `reduce`.
    pub fn reducing_state<V: StateData, N: StateKey>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
        reduce: impl Fn(&V, &V) -> V + Send + Sync + 'static,
    ) -> Result<ReducingState<V, N>> {
        Ok(ReducingState::new(self.register::<N, V>(name, ttl)?, Arc::new(reduce)))
    }

    /// Registers (or finds) an aggregating state applying `function`.
    pub fn aggregating_state<T, F: AggregateFunction<T>, N: StateKey>(
        &mut self,
        name: &str,
        ttl: Option<StateTtl>,
        function: Arc<F>,
    ) -> Result<AggregatingState<T, F, N>> {
        Ok(AggregatingState::new(self.register::<N, F::Acc>(name, ttl)?, function))
    }

    // ---- value ----

    /// The value of `key` in `ns`, if any.
    pub fn value_get<V: StateData, N: StateKey>(
        &mut self,
        h: &ValueState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Option<V>> {
        self.check(kg)?;
        let (t, now, _) = self.table::<N, V>(h.id)?;
        Ok(t.get_mut(kg, key, ns, now, false)?.map(|e| e.value.clone()))
    }

    /// Sets the value of `key` in `ns`.
    pub fn value_set<V: StateData, N: StateKey>(
        &mut self,
        h: &ValueState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        v: V,
    ) -> Result<()> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, V>(h.id)?;
        t.put(kg, key, ns, v, expiry(now, ttl));
        Ok(())
    }

    /// Applies `f` to the value of `key` in `ns` in place, creating it with `init` if absent.
    pub fn value_update<V: StateData, N: StateKey, R>(
        &mut self,
        h: &ValueState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Result<R> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, V>(h.id)?;
        let e = t.get_or_insert_with(kg, key, ns, now, init)?;
        e.expires_at = expiry(now, ttl);
        Ok(f(&mut e.value))
    }

    // ---- list ----

    /// Appends `v` to the list of `key` in `ns`; returns whether the list was new (with
    /// RocksDB: new in the cache — the append is a blind merge that does not read the stored
    /// list, unless the state has a TTL).
    pub fn list_add<V: StateData, N: StateKey>(
        &mut self,
        h: &ListState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        v: V,
    ) -> Result<bool> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, Vec<V>>(h.id)?;
        t.append_blind(kg, key, ns, now, vec![v], expiry(now, ttl), ttl.is_some())
    }

    /// The list of `key` in `ns` (empty if none).
    pub fn list_get<V: StateData, N: StateKey>(
        &mut self,
        h: &ListState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Vec<V>> {
        self.check(kg)?;
        let (t, now, _) = self.table::<N, Vec<V>>(h.id)?;
        Ok(t.get_mut(kg, key, ns, now, false)?
            .map(|e| e.value.clone())
            .unwrap_or_default())
    }

    /// Replaces the list of `key` in `ns` (an empty list clears it).
    pub fn list_replace<V: StateData, N: StateKey>(
        &mut self,
        h: &ListState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        vs: Vec<V>,
    ) -> Result<()> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, Vec<V>>(h.id)?;
        if vs.is_empty() {
            t.remove(kg, key, ns, now)?;
            return Ok(());
        }
        t.put(kg, key, ns, vs, expiry(now, ttl));
        Ok(())
    }

    // ---- map ----

    /// The value under user key `uk` in the map of `key` in `ns` (with RocksDB, a point
    /// lookup of that entry).
    pub fn map_get<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        h: &MapState<UK, UV, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        uk: &UK,
    ) -> Result<Option<UV>> {
        self.check(kg)?;
        match self.map_table::<N, UK, UV>(h.id)? {
            (MapTable::Heap(t), now, _) => Ok(t
                .get_mut(kg, key, ns, now, false)?
                .and_then(|e| e.value.get(uk).cloned())),
            (MapTable::Rocks(m), now, _) => m.get(kg, key, ns, uk, now),
        }
    }

    /// Puts `uv` under `uk` in the map of `key` in `ns` (with RocksDB, a blind write of that
    /// entry: the rest of the map is not read).
    #[allow(clippy::too_many_arguments)]
    pub fn map_put<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        h: &MapState<UK, UV, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        uk: UK,
        uv: UV,
    ) -> Result<()> {
        self.check(kg)?;
        match self.map_table::<N, UK, UV>(h.id)? {
            (MapTable::Heap(t), now, ttl) => {
                let e = t.get_or_insert_with(kg, key, ns, now, hashbrown::HashMap::new)?;
                e.value.insert(uk, uv);
                e.expires_at = expiry(now, ttl);
            }
            (MapTable::Rocks(m), now, ttl) => m.put(kg, key, ns, uk, uv, expiry(now, ttl)),
        }
        Ok(())
    }

    /// Removes `uk` from the map of `key` in `ns`, returning its value.
    pub fn map_remove<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        h: &MapState<UK, UV, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        uk: &UK,
    ) -> Result<Option<UV>> {
        self.check(kg)?;
        match self.map_table::<N, UK, UV>(h.id)? {
            (MapTable::Heap(t), now, _) => {
                let Some(e) = t.get_mut(kg, key, ns, now, true)? else {
                    return Ok(None);
                };
                let old = e.value.remove(uk);
                if e.value.is_empty() {
                    t.remove(kg, key, ns, now)?;
                }
                Ok(old)
            }
            (MapTable::Rocks(m), now, _) => m.remove(kg, key, ns, uk, now),
        }
    }

    /// All entries of the map of `key` in `ns`, in no particular order (with RocksDB, one
    /// prefix iteration, then served from the cache).
    pub fn map_entries<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        h: &MapState<UK, UV, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Vec<(UK, UV)>> {
        self.check(kg)?;
        match self.map_table::<N, UK, UV>(h.id)? {
            (MapTable::Heap(t), now, _) => Ok(t
                .get_mut(kg, key, ns, now, false)?
                .map(|e| e.value.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()),
            (MapTable::Rocks(m), now, _) => m.entries(kg, key, ns, now),
        }
    }

    // ---- reducing ----

    /// Folds `v` into the reducing state of `key` in `ns`.
    pub fn reducing_add<V: StateData, N: StateKey>(
        &mut self,
        h: &ReducingState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        v: V,
    ) -> Result<()> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, V>(h.id)?;
        match t.get_mut(kg, key, ns, now, true)? {
            Some(e) => {
                e.value = (h.reduce)(&e.value, &v);
                e.expires_at = expiry(now, ttl);
            }
            None => t.get_or_insert_with(kg, key, ns, now, || v)?.expires_at = expiry(now, ttl),
        }
        Ok(())
    }

    /// The reduced value of `key` in `ns`.
    pub fn reducing_get<V: StateData, N: StateKey>(
        &mut self,
        h: &ReducingState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Option<V>> {
        self.check(kg)?;
        let (t, now, _) = self.table::<N, V>(h.id)?;
        Ok(t.get_mut(kg, key, ns, now, false)?.map(|e| e.value.clone()))
    }

    // ---- aggregating ----

    /// Adds `v` to the accumulator of `key` in `ns`; returns whether the accumulator was new.
    pub fn aggregating_add<T, F: AggregateFunction<T>, N: StateKey>(
        &mut self,
        h: &AggregatingState<T, F, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        v: &T,
    ) -> Result<bool> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, F::Acc>(h.id)?;
        let mut created = false;
        let e = t.get_or_insert_with(kg, key, ns, now, || {
            created = true;
            h.function.create_accumulator()
        })?;
        h.function.add(v, &mut e.value);
        e.expires_at = expiry(now, ttl);
        Ok(created)
    }

    /// The result of the accumulator of `key` in `ns`, if there is one.
    pub fn aggregating_get<T, F: AggregateFunction<T>, N: StateKey>(
        &mut self,
        h: &AggregatingState<T, F, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Option<F::Out>> {
        self.check(kg)?;
        let (t, now, _) = self.table::<N, F::Acc>(h.id)?;
        Ok(t.get_mut(kg, key, ns, now, false)?
            .map(|e| h.function.get_result(&e.value)))
    }

    /// Merges the accumulators of `sources` into `target` (session windows merging).
    pub fn aggregating_merge<T, F: AggregateFunction<T>, N: StateKey>(
        &mut self,
        h: &AggregatingState<T, F, N>,
        kg: KeyGroup,
        key: &K,
        sources: &[N],
        target: &N,
    ) -> Result<()> {
        let f = &h.function;
        self.merge_into(
            h.id,
            kg,
            key,
            sources,
            target,
            || f.create_accumulator(),
            |acc, other| f.merge(acc, other),
        )
    }

    /// Appends the lists of `sources` to the list of `target` (session windows merging).
    pub fn list_merge<V: StateData, N: StateKey>(
        &mut self,
        h: &ListState<V, N>,
        kg: KeyGroup,
        key: &K,
        sources: &[N],
        target: &N,
    ) -> Result<()> {
        self.merge_into::<N, Vec<V>>(h.id, kg, key, sources, target, Vec::new, |list, mut other| {
            list.append(&mut other)
        })
    }

    /// Removes the entries of `sources` and folds them into `target` (created with `init`).
    #[allow(clippy::too_many_arguments)]
    fn merge_into<N: StateKey, S: StateData>(
        &mut self,
        id: usize,
        kg: KeyGroup,
        key: &K,
        sources: &[N],
        target: &N,
        init: impl FnOnce() -> S,
        mut combine: impl FnMut(&mut S, S),
    ) -> Result<()> {
        self.check(kg)?;
        let (t, now, ttl) = self.table::<N, S>(id)?;
        let mut moved: Vec<S> = Vec::new();
        for ns in sources.iter().filter(|ns| *ns != target) {
            moved.extend(t.remove(kg, key, ns, now)?);
        }
        if moved.is_empty() {
            return Ok(());
        }
        let e = t.get_or_insert_with(kg, key, target, now, init)?;
        for s in moved {
            combine(&mut e.value, s);
        }
        e.expires_at = expiry(now, ttl);
        Ok(())
    }

    // ---- any state ----

    /// Removes the entry of `key` in `ns` from the state with handle id `id`.
    fn clear_id<N: StateKey, S: StateData>(&mut self, id: usize, kg: KeyGroup, key: &K, ns: &N) -> Result<()> {
        self.check(kg)?;
        let (t, now, _) = self.table::<N, S>(id)?;
        t.remove(kg, key, ns, now)?;
        Ok(())
    }

    /// Clears a value state for `key` in `ns`.
    pub fn value_clear<V: StateData, N: StateKey>(
        &mut self,
        h: &ValueState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<()> {
        self.clear_id::<N, V>(h.id, kg, key, ns)
    }

    /// Clears a list state for `key` in `ns`.
    pub fn list_clear<V: StateData, N: StateKey>(
        &mut self,
        h: &ListState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<()> {
        self.clear_id::<N, Vec<V>>(h.id, kg, key, ns)
    }

    /// Clears a map state for `key` in `ns`.
    pub fn map_clear<UK: StateKey, UV: StateData, N: StateKey>(
        &mut self,
        h: &MapState<UK, UV, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<()> {
        self.check(kg)?;
        match self.map_table::<N, UK, UV>(h.id)? {
            (MapTable::Heap(t), now, _) => t.remove(kg, key, ns, now).map(drop),
            (MapTable::Rocks(m), _, _) => m.clear(kg, key, ns),
        }
    }

    /// Clears a reducing state for `key` in `ns`.
    pub fn reducing_clear<V: StateData, N: StateKey>(
        &mut self,
        h: &ReducingState<V, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<()> {
        self.clear_id::<N, V>(h.id, kg, key, ns)
    }

    /// Clears an aggregating state for `key` in `ns`.
    pub fn aggregating_clear<T, F: AggregateFunction<T>, N: StateKey>(
        &mut self,
        h: &AggregatingState<T, F, N>,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<()> {
        self.clear_id::<N, F::Acc>(h.id, kg, key, ns)
    }

    /// Every `(key, namespace)` with a live value in a value state, with the value, for the
    /// key groups of this backend (used by operators that scan their state, e.g. on restore).
    pub fn value_entries<V: StateData, N: StateKey>(&mut self, h: &ValueState<V, N>) -> Result<Vec<(K, N, V)>> {
        let range = self.range;
        let (t, now, _) = self.table::<N, V>(h.id)?;
        let mut out = Vec::new();
        for kg in range.start..range.end {
            out.extend(t.entries_of_group(kg, now)?.into_iter().map(|(k, n, v, _)| (k, n, v)));
        }
        Ok(out)
    }
}

fn expiry(now: i64, ttl: Option<i64>) -> i64 {
    ttl.map_or(NEVER, |t| now.saturating_add(t))
}
