//! Map state. On the heap, one hash map per `(key, namespace)`. With RocksDB, one RocksDB
//! entry per map entry, keyed `key group | key | namespace | user key`, so that a map of any
//! size costs a point lookup per `get`, a blind write per `put`, and a prefix iteration for
//! its entries (Flink's RocksDB map state). In front of RocksDB, a write-back cache per
//! `(key, namespace)` holds the entries read or written, knows whether it holds all of them,
//! and is written in batches like every other state.

use std::any::Any;

use hashbrown::HashMap;

use crate::error::Result;
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::memory::{AnyTable, GroupLookup, Table};
use crate::rocks::RocksStore;
use crate::snapshot::decode;
use crate::state::{StateData, StateKey};

/// A cached map entry.
enum Slot<V> {
    /// Live (until it expires), changed since last written if `dirty`.
    Present { value: V, expires_at: i64, dirty: bool },
    /// Removed; RocksDB may still have it until the next write.
    Deleted,
}

/// The cached part of one map.
struct CachedMap<UK, UV> {
    slots: HashMap<UK, Slot<UV>>,
    /// Whether `slots` holds every entry of the map (a prefix iteration happened).
    complete: bool,
    /// Used since the last eviction (second chance).
    used: bool,
}

impl<UK, UV> Default for CachedMap<UK, UV> {
    fn default() -> Self {
        CachedMap {
            slots: HashMap::new(),
            complete: false,
            used: true,
        }
    }
}

/// A change to write: the entry's key group, key, namespace and user key, and its value
/// and expiry (`None`: delete it).
type Change<'a, K, N, UK, UV> = (KeyGroup, &'a K, (N, UK), Option<(&'a UV, i64)>);

/// Map state with an entry per map entry in RocksDB.
pub(crate) struct RocksMap<K, N, UK, UV> {
    cache: HashMap<(KeyGroup, K, N), CachedMap<UK, UV>>,
    store: RocksStore<K, (N, UK), UV>,
    slots: usize,
}

impl<K: StateKey, N: StateKey, UK: StateKey, UV: StateData> RocksMap<K, N, UK, UV> {
    fn map(&mut self, kg: KeyGroup, key: &K, ns: &N) -> &mut CachedMap<UK, UV> {
        // Look up by reference first: the key is cloned only for a map not cached yet.
        let lookup = GroupLookup(kg, key, ns);
        if !self.cache.contains_key(&lookup) {
            self.cache.insert((kg, key.clone(), ns.clone()), CachedMap::default());
        }
        let m = self.cache.get_mut(&lookup).expect("map was just ensured");
        m.used = true;
        m
    }

    pub(crate) fn get(&mut self, kg: KeyGroup, key: &K, ns: &N, uk: &UK, now: i64) -> Result<Option<UV>> {
        {
            let m = self.map(kg, key, ns);
            match m.slots.get(uk) {
                Some(Slot::Present { value, expires_at, .. }) => {
                    return Ok((*expires_at > now).then(|| value.clone()));
                }
                Some(Slot::Deleted) => return Ok(None),
                None if m.complete => return Ok(None),
                None => {}
            }
        }
        let ns_uk = (ns.clone(), uk.clone());
        let loaded = self.store.load(kg, key, &ns_uk)?;
        let m = self.map(kg, key, ns);
        Ok(match loaded {
            Some((value, expires_at)) => {
                let live = (expires_at > now).then(|| value.clone());
                m.slots.insert(
                    ns_uk.1,
                    Slot::Present {
                        value,
                        expires_at,
                        dirty: false,
                    },
                );
                self.slots += 1;
                live
            }
            None => None,
        })
    }

    pub(crate) fn put(&mut self, kg: KeyGroup, key: &K, ns: &N, uk: UK, value: UV, expires_at: i64) {
        let slot = Slot::Present {
            value,
            expires_at,
            dirty: true,
        };
        if self.map(kg, key, ns).slots.insert(uk, slot).is_none() {
            self.slots += 1;
        }
    }

    pub(crate) fn remove(&mut self, kg: KeyGroup, key: &K, ns: &N, uk: &UK, now: i64) -> Result<Option<UV>> {
        let old = self.get(kg, key, ns, uk, now)?;
        let m = self.map(kg, key, ns);
        if m.slots.insert(uk.clone(), Slot::Deleted).is_none() {
            self.slots += 1;
        }
        Ok(old)
    }

    /// Makes the cached map complete: one prefix iteration over its entries in RocksDB,
    /// under what the cache holds already (which is newer).
    fn complete(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<()> {
        if self.map(kg, key, ns).complete {
            return Ok(());
        }
        let stored = self.store.scan_prefix(kg, key, ns)?;
        let m = self.map(kg, key, ns);
        let mut added = 0;
        for (uk, value, expires_at) in stored {
            m.slots.entry(uk).or_insert_with(|| {
                added += 1;
                Slot::Present {
                    value,
                    expires_at,
                    dirty: false,
                }
            });
        }
        m.complete = true;
        self.slots += added;
        Ok(())
    }

    pub(crate) fn entries(&mut self, kg: KeyGroup, key: &K, ns: &N, now: i64) -> Result<Vec<(UK, UV)>> {
        self.complete(kg, key, ns)?;
        Ok(self
            .map(kg, key, ns)
            .slots
            .iter()
            .filter_map(|(uk, s)| match s {
                Slot::Present { value, expires_at, .. } if *expires_at > now => Some((uk.clone(), value.clone())),
                _ => None,
            })
            .collect())
    }

    pub(crate) fn clear(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<()> {
        self.complete(kg, key, ns)?;
        for s in self.map(kg, key, ns).slots.values_mut() {
            *s = Slot::Deleted;
        }
        Ok(())
    }

    /// Writes the changes in one batch; with `keep`, then evicts whole maps (not used since
    /// the last eviction first) until at most `keep` entries stay cached.
    fn write_back(&mut self, keep: Option<usize>) -> Result<()> {
        let mut changes: Vec<Change<'_, K, N, UK, UV>> = Vec::new();
        for ((kg, k, n), m) in &self.cache {
            for (uk, s) in &m.slots {
                match s {
                    Slot::Present {
                        value,
                        expires_at,
                        dirty: true,
                    } => changes.push((*kg, k, (n.clone(), uk.clone()), Some((value, *expires_at)))),
                    Slot::Deleted => changes.push((*kg, k, (n.clone(), uk.clone()), None)),
                    Slot::Present { .. } => {}
                }
            }
        }
        if !changes.is_empty() {
            self.store
                .write(changes.iter().map(|(kg, k, nu, v)| (*kg, *k, nu, *v)))?;
        }
        drop(changes);
        let mut slots = 0;
        for m in self.cache.values_mut() {
            m.slots.retain(|_, s| match s {
                Slot::Present { dirty, .. } => {
                    *dirty = false;
                    true
                }
                Slot::Deleted => false,
            });
            slots += m.slots.len();
        }
        self.cache.retain(|_, m| m.complete || !m.slots.is_empty());
        self.slots = slots;
        let Some(keep) = keep else { return Ok(()) };
        for second_chance in [true, false] {
            if self.slots <= keep {
                break;
            }
            let mut left = self.slots;
            self.cache.retain(|_, m| {
                let stay = left <= keep || (second_chance && m.used);
                if !stay {
                    left -= m.slots.len();
                }
                stay
            });
            self.slots = left;
        }
        self.cache.values_mut().for_each(|m| m.used = false);
        Ok(())
    }
}

/// The table of a map state, on the heap or in RocksDB.
pub(crate) enum MapTable<K, N, UK, UV> {
    /// One hash map per `(key, namespace)`.
    Heap(Table<K, N, HashMap<UK, UV>>),
    /// One RocksDB entry per map entry.
    Rocks(RocksMap<K, N, UK, UV>),
}

impl<K: StateKey, N: StateKey, UK: StateKey, UV: StateData> MapTable<K, N, UK, UV> {
    pub(crate) fn new(range: KeyGroupRange, store: Option<RocksStore<K, (N, UK), UV>>) -> Self {
        match store {
            Some(store) => MapTable::Rocks(RocksMap {
                cache: HashMap::new(),
                store,
                slots: 0,
            }),
            None => MapTable::Heap(Table::new(range, None)),
        }
    }
}

impl<K: StateKey, N: StateKey, UK: StateKey, UV: StateData> AnyTable for MapTable<K, N, UK, UV> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn purge_expired(&mut self, now: i64) -> Result<usize> {
        match self {
            MapTable::Heap(t) => t.purge_expired(now),
            MapTable::Rocks(m) => {
                let mut dropped = 0;
                for map in m.cache.values_mut() {
                    for s in map.slots.values_mut() {
                        if matches!(s, Slot::Present { expires_at, .. } if *expires_at <= now) {
                            *s = Slot::Deleted;
                            dropped += 1;
                        }
                    }
                }
                Ok(dropped)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            MapTable::Heap(t) => AnyTable::len(t),
            MapTable::Rocks(m) => m.slots,
        }
    }

    fn flush(&mut self, max: usize, always: bool) -> Result<()> {
        match self {
            MapTable::Heap(t) => AnyTable::flush(t, max, always),
            MapTable::Rocks(m) => {
                let evict = m.slots > max;
                if evict || always {
                    m.write_back(evict.then_some(max - max / 4))?;
                }
                Ok(())
            }
        }
    }

    fn snapshot_group(&mut self, kg: KeyGroup, now: i64) -> Result<Option<Vec<u8>>> {
        match self {
            MapTable::Heap(t) => t.snapshot_group(kg, now),
            // RocksDB state is snapshotted as the database's files.
            MapTable::Rocks(_) => Ok(None),
        }
    }

    /// Heap blobs hold `(key, ns, map, expiry)`; blobs read out of RocksDB hold
    /// `(key, (ns, user key), value, expiry)`: each side converts the other's.
    fn restore_group(&mut self, kg: KeyGroup, bytes: &[u8], native: bool) -> Result<()> {
        match (self, native) {
            (MapTable::Heap(t), false) => t.restore_group(kg, bytes, false),
            (MapTable::Heap(t), true) => {
                let entries: Vec<(K, (N, UK), UV, i64)> = decode(bytes)?;
                let mut maps: HashMap<(K, N), (HashMap<UK, UV>, i64)> = HashMap::new();
                for (k, (n, uk), v, e) in entries {
                    let m = maps.entry((k, n)).or_insert_with(|| (HashMap::new(), e));
                    m.0.insert(uk, v);
                    m.1 = m.1.max(e);
                }
                for ((k, n), (map, e)) in maps {
                    t.put(kg, &k, &n, map, e);
                }
                Ok(())
            }
            (MapTable::Rocks(m), true) => {
                let entries: Vec<(K, (N, UK), UV, i64)> = decode(bytes)?;
                m.store
                    .write(entries.iter().map(|(k, nu, v, e)| (kg, k, nu, Some((v, *e)))))
            }
            (MapTable::Rocks(m), false) => {
                let entries: Vec<(K, N, HashMap<UK, UV>, i64)> = decode(bytes)?;
                let exploded: Vec<(K, (N, UK), UV, i64)> = entries
                    .into_iter()
                    .flat_map(|(k, n, map, e)| map.into_iter().map(move |(uk, v)| (k.clone(), (n.clone(), uk), v, e)))
                    .collect();
                m.store
                    .write(exploded.iter().map(|(k, nu, v, e)| (kg, k, nu, Some((v, *e)))))
            }
        }
    }
}
