//! State tables: one hash table per state, split by key group. With a RocksDB store behind
//! it, the table is a write-back cache: misses read through, changes are written in batches
//! when the backend flushes (at every checkpoint, and when the cache outgrows its bound).

use std::any::Any;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap, HashSet};

use crate::error::Result;
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::rocks::RocksStore;
use crate::snapshot::{decode, encode};
use crate::state::{StateData, StateKey};

/// Expiry time meaning "never".
pub(crate) const NEVER: i64 = i64::MAX;

/// One stored value and when it expires.
pub(crate) struct Entry<S> {
    pub(crate) value: S,
    pub(crate) expires_at: i64,
    /// Changed since the store last saw it (meaningful only with a store).
    dirty: bool,
    /// Read or written since the cache last evicted (second-chance eviction).
    used: bool,
    /// Holds only what was appended blindly (the store may hold more before it): completed
    /// with the stored part when read, written as a merge (append) rather than a put.
    partial: bool,
}

/// Borrowed `(key, namespace)`, hashed exactly like the owned tuple so lookups need no clone.
struct Lookup<'a, K, N>(&'a K, &'a N);

impl<K: Hash, N: Hash> Hash for Lookup<'_, K, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(K, N)> for Lookup<'_, K, N> {
    fn equivalent(&self, other: &(K, N)) -> bool {
        *self.0 == other.0 && *self.1 == other.1
    }
}

/// Borrowed `(key group, key, namespace)`, hashed like the owned tuple.
pub(crate) struct GroupLookup<'a, K, N>(pub(crate) KeyGroup, pub(crate) &'a K, pub(crate) &'a N);

impl<K: Hash, N: Hash> Hash for GroupLookup<'_, K, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
        self.2.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(KeyGroup, K, N)> for GroupLookup<'_, K, N> {
    fn equivalent(&self, other: &(KeyGroup, K, N)) -> bool {
        self.0 == other.0 && *self.1 == other.1 && *self.2 == other.2
    }
}

/// The table of one state: `(key, namespace) -> S`, one map per key group of the range.
pub(crate) struct Table<K, N, S> {
    range: KeyGroupRange,
    groups: Vec<HashMap<(K, N), Entry<S>>>,
    store: Option<RocksStore<K, N, S>>,
    /// Entries removed that the store may still have (until the next write): a read of
    /// one of them must not bring it back from the store.
    deleted: HashSet<(KeyGroup, K, N)>,
    /// For list states: concatenates a stored value and one appended blindly after it.
    append: Option<fn(S, S) -> S>,
}

impl<K: StateKey, N: StateKey, S: StateData> Table<K, N, S> {
    pub(crate) fn new(range: KeyGroupRange, store: Option<RocksStore<K, N, S>>) -> Self {
        Table {
            range,
            groups: (0..range.len()).map(|_| HashMap::new()).collect(),
            store,
            deleted: HashSet::new(),
            append: None,
        }
    }

    /// A table whose values can be appended to without reading them first (list states):
    /// `append` concatenates a stored value and what was appended after it, as the RocksDB
    /// merge operator does with the stored bytes.
    pub(crate) fn appendable(mut self, append: fn(S, S) -> S) -> Self {
        self.append = Some(append);
        self
    }

    /// Appends `value` to the entry of `(key, ns)` (created if absent), expiring at
    /// `expires_at`; returns whether the entry was new in the cache. With a store and no TTL
    /// the stored value is not read: the appended part is written as a merge.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append_blind(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        now: i64,
        value: S,
        expires_at: i64,
        ttl: bool,
    ) -> Result<bool>
    where
        S: Default,
    {
        let Some(append) = self.append else {
            return Err(crate::error::StateError::Storage(
                "append on a state that is not a list".into(),
            ));
        };
        if self.store.is_none() || ttl {
            // Read-modify-write: on the heap that is free; with a TTL an expired stored list
            // must not come back to life under a merge.
            let mut created = false;
            let e = self.get_or_insert_with(kg, key, ns, now, || {
                created = true;
                S::default()
            })?;
            e.value = append(std::mem::take(&mut e.value), value);
            e.expires_at = expires_at;
            return Ok(created);
        }
        let group = self.group(kg);
        match group.get_mut(&Lookup(key, ns)) {
            Some(e) if e.expires_at > now => {
                e.value = append(std::mem::take(&mut e.value), value);
                e.expires_at = expires_at;
                e.dirty = true;
                e.used = true;
                Ok(false)
            }
            _ => {
                let entry = Entry {
                    value,
                    expires_at,
                    dirty: true,
                    used: true,
                    partial: true,
                };
                group.insert((key.clone(), ns.clone()), entry);
                Ok(true)
            }
        }
    }

    fn group(&mut self, kg: KeyGroup) -> &mut HashMap<(K, N), Entry<S>> {
        let i = usize::from(kg.wrapping_sub(self.range.start));
        &mut self.groups[i]
    }

    /// Brings `(key, ns)` into the cache from the store if it is there and not cached.
    fn load(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let i = usize::from(kg.wrapping_sub(self.range.start));
        match self.groups[i].get(&Lookup(key, ns)) {
            Some(e) if e.partial => {
                // Stored elements first (unless removed since), then those appended since.
                let stored = if self.deleted.contains(&GroupLookup(kg, key, ns)) {
                    None
                } else {
                    store.load(kg, key, ns)?
                };
                let Some((k, mut e)) = self.groups[i].remove_entry(&Lookup(key, ns)) else {
                    return Ok(());
                };
                if let (Some((value, _)), Some(append)) = (stored, self.append) {
                    e.value = append(value, e.value);
                }
                e.partial = false;
                self.groups[i].insert(k, e);
                return Ok(());
            }
            Some(_) => return Ok(()),
            None if self.deleted.contains(&GroupLookup(kg, key, ns)) => return Ok(()),
            None => {}
        }
        if let Some((value, expires_at)) = store.load(kg, key, ns)? {
            let entry = Entry {
                value,
                expires_at,
                dirty: false,
                used: false,
                partial: false,
            };
            self.groups[i].insert((key.clone(), ns.clone()), entry);
        }
        Ok(())
    }

    /// The live entry of `(key, ns)`, dropping it first if it expired; `write` marks it
    /// changed.
    pub(crate) fn get_mut(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        now: i64,
        write: bool,
    ) -> Result<Option<&mut Entry<S>>> {
        self.load(kg, key, ns)?;
        let lookup = Lookup(key, ns);
        let expired = match self.group(kg).get(&lookup) {
            None => return Ok(None),
            Some(e) => e.expires_at <= now,
        };
        if expired {
            self.remove(kg, key, ns, now)?;
            return Ok(None);
        }
        let e = self.group(kg).get_mut(&lookup);
        if let Some(e) = e {
            e.dirty |= write;
            e.used = true;
            return Ok(Some(e));
        }
        Ok(None)
    }

    /// The entry of `(key, ns)` (marked changed), created with `init` if absent or expired.
    pub(crate) fn get_or_insert_with(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        now: i64,
        init: impl FnOnce() -> S,
    ) -> Result<&mut Entry<S>> {
        self.load(kg, key, ns)?;
        let group = self.group(kg);
        let lookup = Lookup(key, ns);
        let live = matches!(group.get(&lookup), Some(e) if e.expires_at > now);
        if !live {
            let entry = Entry {
                value: init(),
                expires_at: NEVER,
                dirty: true,
                used: true,
                partial: false,
            };
            group.insert((key.clone(), ns.clone()), entry);
        }
        let e = group.get_mut(&lookup).expect("entry was just ensured");
        e.dirty = true;
        e.used = true;
        Ok(e)
    }

    /// Sets `(key, ns)` to `value` without reading what the store holds (a blind write: the
    /// store's old value, if any, is overwritten at the next flush).
    pub(crate) fn put(&mut self, kg: KeyGroup, key: &K, ns: &N, value: S, expires_at: i64) {
        let entry = Entry {
            value,
            expires_at,
            dirty: true,
            used: true,
            partial: false,
        };
        let group = self.group(kg);
        match group.get_mut(&Lookup(key, ns)) {
            Some(e) => *e = entry,
            None => {
                group.insert((key.clone(), ns.clone()), entry);
            }
        }
    }

    pub(crate) fn remove(&mut self, kg: KeyGroup, key: &K, ns: &N, now: i64) -> Result<Option<S>> {
        self.load(kg, key, ns)?;
        let Some(e) = self.group(kg).remove(&Lookup(key, ns)) else {
            return Ok(None);
        };
        if self.store.is_some() {
            self.deleted.insert((kg, key.clone(), ns.clone()));
        }
        Ok((e.expires_at > now).then_some(e.value))
    }

    /// Writes changes to the store; with `keep`, then evicts entries until at most `keep`
    /// remain, first those not used since the last eviction (a second chance, as in CLOCK:
    /// entries in use stay cached, entries the job has moved on from go).
    pub(crate) fn flush(&mut self, keep: Option<usize>) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let range = self.range;
        let puts = self.groups.iter().enumerate().flat_map(|(i, g)| {
            g.iter()
                .filter(|(_, e)| e.dirty && !e.partial)
                .map(move |((k, n), e)| (range.start + i as KeyGroup, k, n, Some((&e.value, e.expires_at))))
        });
        let deletes = self.deleted.iter().map(|(kg, k, n)| (*kg, k, n, None));
        store.write(deletes.chain(puts))?;
        let appended = self.groups.iter().enumerate().flat_map(|(i, g)| {
            g.iter()
                .filter(|(_, e)| e.dirty && e.partial)
                .map(move |((k, n), e)| (range.start + i as KeyGroup, k, n, &e.value, e.expires_at))
        });
        store.merge(appended)?;
        self.deleted.clear();
        // What was appended blindly is in the store now, after what it held: the cache
        // cannot tell the whole value, so it forgets it.
        for g in &mut self.groups {
            g.retain(|_, e| !e.partial);
        }
        let mut len: usize = self.groups.iter().map(|g| g.len()).sum();
        for g in &mut self.groups {
            g.values_mut().for_each(|e| e.dirty = false);
        }
        let Some(keep) = keep else { return Ok(()) };
        // First the entries not used since the last eviction, then, if the cache is still
        // too full (everything was in use), any.
        for second_chance in [true, false] {
            for g in &mut self.groups {
                if len <= keep {
                    break;
                }
                g.retain(|_, e| {
                    let stay = len <= keep || (second_chance && e.used);
                    if !stay {
                        len -= 1;
                    }
                    stay
                });
            }
        }
        for g in &mut self.groups {
            g.values_mut().for_each(|e| e.used = false);
        }
        Ok(())
    }

    /// Every live `(key, namespace)` of one key group with its value.
    pub(crate) fn entries_of_group(&mut self, kg: KeyGroup, now: i64) -> Result<Vec<(K, N, S, i64)>> {
        if self.store.is_some() {
            if self.groups.iter().any(|g| g.values().any(|e| e.dirty)) || !self.deleted.is_empty() {
                self.flush(None)?;
            }
            if let Some(store) = &self.store {
                return Ok(store.scan_group(kg)?.into_iter().filter(|e| e.3 > now).collect());
            }
        }
        let i = usize::from(kg.wrapping_sub(self.range.start));
        Ok(self.groups[i]
            .iter()
            .filter(|(_, e)| e.expires_at > now)
            .map(|((k, n), e)| (k.clone(), n.clone(), e.value.clone(), e.expires_at))
            .collect())
    }
}

/// Operations on a table that need not know its types.
pub(crate) trait AnyTable: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Drops expired cached entries; returns how many were dropped.
    fn purge_expired(&mut self, now: i64) -> Result<usize>;
    /// Number of cached entries, expired or not.
    fn len(&self) -> usize;
    /// If the cache holds more than `max` entries, or `always`, writes changes to the store;
    /// in the first case it also evicts a quarter of `max`, least recently used first.
    fn flush(&mut self, max: usize, always: bool) -> Result<()>;
    /// The live entries of key group `kg`, encoded; `None` if there are none.
    fn snapshot_group(&mut self, kg: KeyGroup, now: i64) -> Result<Option<Vec<u8>>>;
    /// Adds the entries of a blob made by `snapshot_group`, or read out of a RocksDB
    /// snapshot (`native`; the same format for every state but maps).
    fn restore_group(&mut self, kg: KeyGroup, bytes: &[u8], native: bool) -> Result<()>;
}

impl<K: StateKey, N: StateKey, S: StateData> AnyTable for Table<K, N, S> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn purge_expired(&mut self, now: i64) -> Result<usize> {
        let mut expired = Vec::new();
        for (i, g) in self.groups.iter_mut().enumerate() {
            g.retain(|(k, n), e| {
                let live = e.expires_at > now;
                if !live {
                    expired.push((self.range.start + i as KeyGroup, k.clone(), n.clone()));
                }
                live
            });
        }
        let dropped = expired.len();
        if self.store.is_some() {
            self.deleted.extend(expired);
        }
        Ok(dropped)
    }

    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    fn flush(&mut self, max: usize, always: bool) -> Result<()> {
        let evict = AnyTable::len(self) > max;
        if evict || always {
            Table::flush(self, evict.then_some(max - max / 4))?;
        }
        Ok(())
    }

    fn snapshot_group(&mut self, kg: KeyGroup, now: i64) -> Result<Option<Vec<u8>>> {
        let entries = self.entries_of_group(kg, now)?;
        if entries.is_empty() {
            return Ok(None);
        }
        encode(&entries).map(Some)
    }

    fn restore_group(&mut self, kg: KeyGroup, bytes: &[u8], _native: bool) -> Result<()> {
        let entries: Vec<(K, N, S, i64)> = decode(bytes)?;
        match &self.store {
            Some(store) => store.write(entries.iter().map(|(k, n, v, e)| (kg, k, n, Some((v, *e))))),
            None => {
                let group = self.group(kg);
                for (k, n, value, expires_at) in entries {
                    group.insert(
                        (k, n),
                        Entry {
                            value,
                            expires_at,
                            dirty: false,
                            used: false,
                            partial: false,
                        },
                    );
                }
                Ok(())
            }
        }
    }
}
