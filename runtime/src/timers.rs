//! Timers: per key and namespace, deduplicated, fired in timestamp order.
//!
//! Keyed operators own a [`TimerService`] with one [`TimerStore`] for event time (fired as the
//! watermark passes) and one for processing time (fired by the task's wakeups). Timers are
//! keyed state: they carry their key group so that they are snapshotted and rescaled with it.
//!
//! With the heap backend a store keeps every timer in memory and snapshots them as blobs per
//! key group. With RocksDB, the timers live in a column family of the database (key group |
//! timestamp | key, namespace: see [`TimerColumn`]) and the store keeps a cache in front of it
//! (Flink's RocksDB timer service works the same way):
//!
//! - the cache holds *every* timer earlier than a boundary time, so the earliest timer is
//!   always in memory; timers at or after the boundary are only in RocksDB;
//! - changes (registrations, deletions, fired timers) are collected and written in one write
//!   batch when they pile up, before timers are read back, and at every checkpoint (so the
//!   database's own checkpoint holds the timers: snapshots stay incremental);
//! - a timer registered and fired (or deleted) between two writes never touches RocksDB, so
//!   short-lived timers, like a window's, cost no more than on the heap;
//! - when the cache outgrows its bound the latest timers leave it (they are in RocksDB
//!   already, or about to be written), and when it runs dry it is refilled with the next
//!   earliest timers, a seek per key group.

use std::collections::BTreeMap;

use floe_checkpoints::{decode, encode, KeyGroup, KeyedStateBackend, StateError, StateKey, StateSnapshot, TimerColumn};
use hashbrown::HashMap;
use serde::Serialize;

use crate::element::Timestamp;

/// The bound below which about `target` of the `loaded` timers lie, above the earliest of
/// them whatever the ties: the earliest timestamp is always loaded whole, so a refill always
/// makes progress.
fn trim_bound(loaded: &mut [(Timestamp, KeyGroup, Vec<u8>)], target: usize) -> Timestamp {
    loaded.select_nth_unstable_by_key(target, |e| e.0);
    let nth = loaded[target].0;
    let earliest = loaded[..target].iter().map(|e| e.0).min().unwrap_or(nth);
    if nth > earliest {
        return nth;
    }
    loaded
        .iter()
        .map(|e| e.0)
        .filter(|ts| *ts > earliest)
        .min()
        .unwrap_or(Timestamp::MAX)
}

/// Timestamp bytes whose order is the timestamps' order (big endian, sign bit flipped).
fn ts_bytes(ts: Timestamp) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn ts_from(bytes: &[u8]) -> Option<Timestamp> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

fn corrupt(what: &str) -> StateError {
    StateError::Serialization(format!("corrupt timer {what}"))
}

/// A pending change of a timer in RocksDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Write it; `fresh` if RocksDB cannot hold it yet (so a deletion just forgets the write).
    Put { fresh: bool },
    /// Delete it.
    Delete,
}

/// The RocksDB side of a timer store.
struct Spill {
    column: TimerColumn,
    /// Every timer earlier than this is in the cache; later ones are in RocksDB (or pending).
    boundary: Timestamp,
    /// Per key group, a lower bound of its timers at or after `boundary` (absent: none).
    heads: BTreeMap<KeyGroup, Timestamp>,
    /// Changes not yet written, by full RocksDB key.
    pending: HashMap<Box<[u8]>, Change>,
    /// Bound of the cache and of the pending changes.
    limit: usize,
    /// The key being worked on.
    key: Vec<u8>,
}

impl Spill {
    fn encode<K: Serialize, N: Serialize>(&mut self, kg: KeyGroup, ts: Timestamp, key: &K, ns: &N) -> bool {
        self.key.clear();
        self.key.extend_from_slice(&kg.to_be_bytes());
        self.key.extend_from_slice(&ts_bytes(ts));
        bincode::serialize_into(&mut self.key, &(key, ns)).is_ok()
    }

    /// Records a write of the current key; false if one is pending already.
    fn put(&mut self, fresh: bool) -> bool {
        match self.pending.get_mut(&self.key[..]) {
            Some(Change::Put { .. }) => false,
            Some(c) => {
                *c = Change::Put { fresh: false };
                true
            }
            None => {
                self.pending
                    .insert(self.key.clone().into_boxed_slice(), Change::Put { fresh });
                true
            }
        }
    }

    /// Records a deletion of the current key.
    fn delete(&mut self) {
        match self.pending.get(&self.key[..]) {
            Some(Change::Put { fresh: true }) => {
                self.pending.remove(&self.key[..]);
            }
            Some(Change::Delete) => {}
            _ => {
                self.pending.insert(self.key.clone().into_boxed_slice(), Change::Delete);
            }
        }
    }

    fn flush(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.column.write(
            self.pending
                .iter()
                .map(|(k, c)| (&k[..], matches!(c, Change::Put { .. }))),
        )?;
        self.pending.clear();
        Ok(())
    }

    fn lower_head(&mut self, kg: KeyGroup, ts: Timestamp) {
        let head = self.heads.entry(kg).or_insert(ts);
        *head = (*head).min(ts);
    }
}

/// A cached timer's key group, and whether RocksDB holds it (or will at the next write).
type Persisted = (KeyGroup, bool);

/// Timers of one time domain.
pub struct TimerStore<K, N> {
    /// The cached timers in firing order: by time, then registration (`seq`). One entry
    /// per timer, so that registering one allocates nothing but B-tree nodes.
    queue: BTreeMap<(Timestamp, u64), (KeyGroup, K, N)>,
    seq: u64,
    /// The cached timers, with whether RocksDB holds them (or will at the next write).
    registered: HashMap<(Timestamp, K, N), Persisted>,
    spill: Option<Spill>,
    generation: u64,
    error: Option<String>,
}

impl<K, N> std::fmt::Debug for TimerStore<K, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerStore")
            .field("cached", &self.registered.len())
            .field("in_rocksdb", &self.spill.is_some())
            .finish()
    }
}

impl<K, N> Default for TimerStore<K, N> {
    fn default() -> Self {
        TimerStore {
            queue: BTreeMap::new(),
            seq: 0,
            registered: HashMap::new(),
            spill: None,
            generation: 0,
            error: None,
        }
    }
}

impl<K: StateKey, N: StateKey> TimerStore<K, N> {
    /// Registers a timer; returns false if the same timer already exists (with RocksDB, a
    /// timer beyond the cache that was written out before may be reported as new: registering
    /// it again is harmless, it still fires once).
    pub fn register(&mut self, ts: Timestamp, kg: KeyGroup, key: &K, ns: &N) -> bool {
        let Some(spill) = &mut self.spill else {
            if self
                .registered
                .insert((ts, key.clone(), ns.clone()), (kg, false))
                .is_some()
            {
                return false;
            }
            self.enqueue(ts, kg, key.clone(), ns.clone());
            self.generation += 1;
            return true;
        };
        if ts < spill.boundary {
            // Cached only: written at the next write-out, if it has not fired by then.
            match self.registered.entry((ts, key.clone(), ns.clone())) {
                hashbrown::hash_map::Entry::Occupied(_) => return false,
                hashbrown::hash_map::Entry::Vacant(v) => {
                    v.insert((kg, false));
                }
            }
            self.seq += 1;
            self.queue.insert((ts, self.seq), (kg, key.clone(), ns.clone()));
            if self.registered.len() > spill.limit {
                self.shrink_cache();
            }
        } else {
            if !spill.encode(kg, ts, key, ns) {
                self.error = Some(format!("timer key of {key:?} cannot be serialized"));
                return false;
            }
            if !spill.put(false) {
                return false;
            }
            spill.lower_head(kg, ts);
        }
        self.generation += 1;
        true
    }

    /// Deletes a timer; returns whether it existed (with RocksDB, a timer beyond the cache
    /// is reported as existing).
    pub fn delete(&mut self, ts: Timestamp, kg: KeyGroup, key: &K, ns: &N) -> bool {
        // The queue entry is dropped lazily when its time comes.
        let Some(spill) = &mut self.spill else {
            let existed = self.registered.remove(&(ts, key.clone(), ns.clone())).is_some();
            self.generation += u64::from(existed);
            return existed;
        };
        let persisted = if ts < spill.boundary {
            match self.registered.remove(&(ts, key.clone(), ns.clone())) {
                None => return false,
                Some((_, persisted)) => persisted,
            }
        } else {
            true
        };
        if persisted {
            if !spill.encode(kg, ts, key, ns) {
                self.error = Some(format!("timer key of {key:?} cannot be serialized"));
                return false;
            }
            spill.delete();
        }
        self.generation += 1;
        true
    }

    /// Removes and returns the earliest registered timer at or before `upto`.
    pub fn pop_due(&mut self, upto: Timestamp) -> crate::Result<Option<(Timestamp, KeyGroup, K, N)>> {
        self.check()?;
        loop {
            if let Some((ts, kg, k, n, persisted)) = self.pop_cached(upto) {
                if let (Some(spill), true) = (&mut self.spill, persisted) {
                    spill.encode(kg, ts, &k, &n);
                    spill.delete();
                }
                self.generation += 1;
                return Ok(Some((ts, kg, k, n)));
            }
            let Some(spill) = &self.spill else { return Ok(None) };
            if upto < spill.boundary || spill.heads.values().min().is_none_or(|h| *h > upto) {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    fn enqueue(&mut self, ts: Timestamp, kg: KeyGroup, key: K, ns: N) {
        self.seq += 1;
        self.queue.insert((ts, self.seq), (kg, key, ns));
    }

    fn pop_cached(&mut self, upto: Timestamp) -> Option<(Timestamp, KeyGroup, K, N, bool)> {
        loop {
            let entry = self.queue.first_entry()?;
            let ts = entry.key().0;
            if ts > upto {
                return None;
            }
            // Entries of deleted timers are dropped here, lazily.
            let (kg, k, n) = entry.remove();
            let id = (ts, k, n);
            if let Some((_, persisted)) = self.registered.remove(&id) {
                let (ts, k, n) = id;
                return Some((ts, kg, k, n, persisted));
            }
        }
    }

    /// The earliest registered timestamp.
    pub fn next_timestamp(&mut self) -> crate::Result<Option<Timestamp>> {
        self.check()?;
        loop {
            if let Some(ts) = self.next_cached() {
                return Ok(Some(ts));
            }
            match &self.spill {
                Some(spill) if !spill.heads.is_empty() => self.refill()?,
                _ => return Ok(None),
            }
        }
    }

    fn next_cached(&mut self) -> Option<Timestamp> {
        loop {
            let (&(ts, _), (_, k, n)) = self.queue.first_key_value()?;
            if self.registered.contains_key(&(ts, k.clone(), n.clone())) {
                return Some(ts);
            }
            self.queue.pop_first();
        }
    }

    /// Number of timers in memory (with RocksDB, the cached ones only).
    pub fn len(&self) -> usize {
        self.registered.len()
    }

    /// Whether no timer is in memory (with RocksDB, more may wait in the database).
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }

    /// Changes with every registration, deletion and firing: operators compare it to know
    /// whether to re-arm their processing-time wakeup.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Writes the pending changes to RocksDB if they outgrew their bound. Operators call it
    /// once per batch.
    pub fn maintain(&mut self) -> crate::Result<()> {
        self.check()?;
        if let Some(spill) = &mut self.spill {
            if spill.pending.len() > spill.limit {
                spill.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the cached timers RocksDB does not hold yet and the pending changes, in one
    /// batch.
    fn write_out(&mut self) -> crate::Result<()> {
        let Some(spill) = &mut self.spill else { return Ok(()) };
        for ((ts, k, n), (kg, persisted)) in self.registered.iter_mut() {
            if !*persisted {
                if !spill.encode(*kg, *ts, k, n) {
                    return Err(StateError::Serialization(format!("timer key of {k:?} cannot be serialized")).into());
                }
                spill.put(true);
                *persisted = true;
            }
        }
        spill.flush()?;
        Ok(())
    }

    fn check(&mut self) -> crate::Result<()> {
        match self.error.take() {
            Some(e) => Err(StateError::Serialization(e).into()),
            None => Ok(()),
        }
    }

    /// Lets the latest timers leave the cache until it is half full: they are in RocksDB or
    /// about to be written, and the boundary moves down to the earliest of them.
    fn shrink_cache(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        let keep = spill.limit / 2;
        while self.registered.len() > keep {
            let Some(&(ts, _)) = self.queue.last_key_value().map(|(k, _)| k) else {
                break;
            };
            // Every timer of the latest timestamp leaves together: the boundary is a time.
            let mut list = Vec::new();
            while let Some(e) = self.queue.last_entry() {
                if e.key().0 != ts {
                    break;
                }
                list.push(e.remove());
            }
            for (kg, k, n) in list {
                if let Some((_, persisted)) = self.registered.remove(&(ts, k.clone(), n.clone())) {
                    if !persisted {
                        // Leaving the cache before it was written: write it now.
                        if !spill.encode(kg, ts, &k, &n) {
                            self.error = Some(format!("timer key of {k:?} cannot be serialized"));
                        }
                        spill.put(true);
                    }
                    spill.lower_head(kg, ts);
                }
            }
            spill.boundary = ts;
        }
    }

    /// Moves the earliest timers at or after the boundary from RocksDB into the cache (about
    /// a quarter of its bound) and advances the boundary past them.
    fn refill(&mut self) -> crate::Result<()> {
        self.write_out()?;
        let Some(spill) = &mut self.spill else { return Ok(()) };
        let target = (spill.limit / 4).max(1);
        let mut heads: Vec<(Timestamp, KeyGroup)> = spill.heads.iter().map(|(kg, h)| (*h, *kg)).collect();
        heads.sort_unstable();
        let mut loaded: Vec<(Timestamp, KeyGroup, Vec<u8>)> = Vec::new();
        let mut new_heads = BTreeMap::new();
        // Everything earlier than `bound` is loaded (it only ever moves down).
        let mut bound = Timestamp::MAX;
        let from = ts_bytes(spill.boundary);
        for (head, kg) in heads {
            if head >= bound {
                new_heads.insert(kg, head);
                continue;
            }
            let mut taken = 0;
            let mut last = None;
            let mut stopped_at = None;
            let mut bad = false;
            spill.column.scan(kg, from, |k| {
                let Some(ts) = ts_from(k) else {
                    bad = true;
                    return false;
                };
                // Timers of one timestamp are never split: the boundary is a time.
                if ts >= bound || (taken >= target && last != Some(ts)) {
                    stopped_at = Some((ts, ts < bound));
                    return false;
                }
                loaded.push((ts, kg, k[8..].to_vec()));
                taken += 1;
                last = Some(ts);
                true
            })?;
            if bad {
                return Err(corrupt("key in RocksDB").into());
            }
            if let Some((ts, full)) = stopped_at {
                new_heads.insert(kg, ts);
                if full {
                    bound = bound.min(ts);
                }
            }
            if loaded.len() > target {
                bound = bound.min(trim_bound(&mut loaded, target));
            }
        }
        for (ts, kg, bytes) in loaded {
            if ts >= bound {
                let head = new_heads.entry(kg).or_insert(ts);
                *head = (*head).min(ts);
                continue;
            }
            let (k, n): (K, N) = bincode::deserialize(&bytes).map_err(|_| corrupt("key in RocksDB"))?;
            if self.registered.insert((ts, k.clone(), n.clone()), (kg, true)).is_none() {
                self.seq += 1;
                self.queue.insert((ts, self.seq), (kg, k, n));
            }
        }
        spill.boundary = bound;
        spill.heads = new_heads;
        Ok(())
    }

    /// Connects the store to `backend` (with RocksDB: the column family `name`) and registers
    /// the timers `restored` holds for the backend's key groups: blobs of heap snapshots, and
    /// timers read out of RocksDB snapshots of other key-group ranges. Call it after the
    /// backend restored its state.
    pub fn open<KB: StateKey>(
        &mut self,
        name: &str,
        backend: &mut KeyedStateBackend<KB>,
        restored: Option<&StateSnapshot>,
    ) -> crate::Result<()> {
        if let Some(column) = backend.timer_column(name)? {
            let range = backend.key_group_range();
            // A restored database of this very range holds its timers already.
            let installed = restored.is_some_and(|s| !s.native.is_empty());
            let (boundary, heads) = if installed {
                (
                    Timestamp::MIN,
                    (range.start..range.end).map(|kg| (kg, Timestamp::MIN)).collect(),
                )
            } else {
                (Timestamp::MAX, BTreeMap::new())
            };
            self.spill = Some(Spill {
                column,
                boundary,
                heads,
                pending: HashMap::new(),
                limit: backend.cache_entries().unwrap_or(usize::MAX).max(16),
                key: Vec::new(),
            });
        }
        for (kg, blob) in backend.take_restored(name) {
            let count = blob.get(..8).ok_or_else(|| corrupt("blob"))?;
            let count = u64::from_le_bytes(count.try_into().map_err(|_| corrupt("blob"))?);
            let mut rest = &blob[8..];
            for _ in 0..count {
                let ts = ts_from(rest).ok_or_else(|| corrupt("blob"))?;
                rest = &rest[8..];
                let (k, n): (K, N) = bincode::deserialize_from(&mut rest).map_err(|_| corrupt("blob"))?;
                self.register(ts, kg, &k, &n);
            }
        }
        if let Some(snapshot) = restored {
            for (kg, bytes) in snapshot.keyed(name) {
                let timers: Vec<(Timestamp, K, N)> = decode(bytes)?;
                for (ts, k, n) in timers {
                    self.register(ts, kg, &k, &n);
                }
            }
        }
        self.check()
    }

    /// Adds the registered timers to `snapshot`: on the heap as blobs called `name` per key
    /// group; with RocksDB by writing the pending changes, so that the database's checkpoint
    /// (taken next) holds them.
    pub fn snapshot_into(&mut self, name: &str, snapshot: &mut StateSnapshot) -> crate::Result<()> {
        self.check()?;
        if self.spill.is_some() {
            return self.write_out();
        }
        let mut groups: BTreeMap<KeyGroup, Vec<(Timestamp, &K, &N)>> = BTreeMap::new();
        for (&(ts, _), (kg, k, n)) in &self.queue {
            if self.registered.contains_key(&(ts, k.clone(), n.clone())) {
                groups.entry(*kg).or_default().push((ts, k, n));
            }
        }
        for (kg, timers) in groups {
            snapshot.add_keyed(kg, name, encode(&timers)?);
        }
        Ok(())
    }
}

/// Event-time and processing-time timers of a keyed operator.
#[derive(Debug)]
pub struct TimerService<K, N> {
    /// Fired when the watermark passes them.
    pub event_time: TimerStore<K, N>,
    /// Fired when processing time passes them.
    pub processing_time: TimerStore<K, N>,
}

const EVENT: &str = "timers/event";
const PROCESSING: &str = "timers/processing";

impl<K: StateKey, N: StateKey> TimerService<K, N> {
    /// Connects both stores to `backend` and restores their timers from `restored`.
    pub fn open<KB: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<KB>,
        restored: Option<&StateSnapshot>,
    ) -> crate::Result<()> {
        self.event_time.open(EVENT, backend, restored)?;
        self.processing_time.open(PROCESSING, backend, restored)
    }

    /// Adds both kinds of timers to `snapshot` (before the backend's own snapshot).
    pub fn snapshot_into(&mut self, snapshot: &mut StateSnapshot) -> crate::Result<()> {
        self.event_time.snapshot_into(EVENT, snapshot)?;
        self.processing_time.snapshot_into(PROCESSING, snapshot)
    }

    /// Writes out pending changes that outgrew their bound (see [`TimerStore::maintain`]).
    pub fn maintain(&mut self) -> crate::Result<()> {
        self.event_time.maintain()?;
        self.processing_time.maintain()
    }
}

impl<K, N> Default for TimerService<K, N> {
    fn default() -> Self {
        TimerService {
            event_time: TimerStore::default(),
            processing_time: TimerStore::default(),
        }
    }
}

#[cfg(test)]
mod tests;
