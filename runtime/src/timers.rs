//! Timers: per key and namespace, deduplicated, fired in timestamp order.
//!
//! Keyed operators own a [`TimerService`] with one [`TimerStore`] for event time (fired as the
//! watermark passes) and one for processing time (fired by the task's wakeups). Timers are
//! keyed state: they carry their key group so that they are snapshotted and rescaled with it.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;

use std::collections::BTreeMap as Groups;

use floe_checkpoints::{decode, encode, KeyGroup, StateSnapshot};
use hashbrown::HashSet;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::element::Timestamp;

/// Timers of one time domain.
#[derive(Debug)]
pub struct TimerStore<K, N> {
    queue: BTreeMap<Timestamp, VecDeque<(KeyGroup, K, N)>>,
    registered: HashSet<(Timestamp, K, N)>,
}

impl<K, N> Default for TimerStore<K, N> {
    fn default() -> Self {
        TimerStore {
            queue: BTreeMap::new(),
            registered: HashSet::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, N: Hash + Eq + Clone> TimerStore<K, N> {
    /// Registers a timer; returns false if the same timer already exists.
    pub fn register(&mut self, ts: Timestamp, kg: KeyGroup, key: &K, ns: &N) -> bool {
        if !self.registered.insert((ts, key.clone(), ns.clone())) {
            return false;
        }
        self.queue
            .entry(ts)
            .or_default()
            .push_back((kg, key.clone(), ns.clone()));
        true
    }

    /// Deletes a timer; returns whether it existed.
    pub fn delete(&mut self, ts: Timestamp, key: &K, ns: &N) -> bool {
        // The queue entry is dropped lazily when its time comes.
        self.registered.remove(&(ts, key.clone(), ns.clone()))
    }

    /// Removes and returns the earliest registered timer at or before `upto`.
    pub fn pop_due(&mut self, upto: Timestamp) -> Option<(Timestamp, KeyGroup, K, N)> {
        loop {
            let mut entry = self.queue.first_entry()?;
            let ts = *entry.key();
            if ts > upto {
                return None;
            }
            let list = entry.get_mut();
            // Fire in registration order within one timestamp.
            let Some((kg, k, n)) = list.pop_front() else {
                entry.remove();
                continue;
            };
            if list.is_empty() {
                entry.remove();
            }
            if self.registered.remove(&(ts, k.clone(), n.clone())) {
                return Some((ts, kg, k, n));
            }
        }
    }

    /// The earliest registered timestamp.
    pub fn next_timestamp(&mut self) -> Option<Timestamp> {
        loop {
            let (ts, list) = self.queue.first_key_value()?;
            if list
                .iter()
                .any(|(_, k, n)| self.registered.contains(&(*ts, k.clone(), n.clone())))
            {
                return Some(*ts);
            }
            self.queue.pop_first();
        }
    }

    /// Number of registered timers.
    pub fn len(&self) -> usize {
        self.registered.len()
    }

    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }
}

impl<K: Hash + Eq + Clone + Serialize + DeserializeOwned, N: Hash + Eq + Clone + Serialize + DeserializeOwned>
    TimerStore<K, N>
{
    /// Adds the registered timers to `snapshot`, per key group, as blobs called `name`.
    pub fn snapshot_into(&self, name: &str, snapshot: &mut StateSnapshot) -> crate::Result<()> {
        let mut groups: Groups<KeyGroup, Vec<(Timestamp, &K, &N)>> = Groups::new();
        for (ts, list) in &self.queue {
            for (kg, k, n) in list {
                if self.registered.contains(&(*ts, k.clone(), n.clone())) {
                    groups.entry(*kg).or_default().push((*ts, k, n));
                }
            }
        }
        for (kg, timers) in groups {
            snapshot.add_keyed(kg, name, encode(&timers)?);
        }
        Ok(())
    }

    /// Registers the timers of the blobs called `name` in `snapshot`.
    pub fn restore_from(&mut self, name: &str, snapshot: &StateSnapshot) -> crate::Result<()> {
        for (kg, bytes) in snapshot.keyed(name) {
            let timers: Vec<(Timestamp, K, N)> = decode(bytes)?;
            for (ts, k, n) in timers {
                self.register(ts, kg, &k, &n);
            }
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

impl<K: Hash + Eq + Clone + Serialize + DeserializeOwned, N: Hash + Eq + Clone + Serialize + DeserializeOwned>
    TimerService<K, N>
{
    /// Adds both kinds of timers to `snapshot`.
    pub fn snapshot_into(&self, snapshot: &mut StateSnapshot) -> crate::Result<()> {
        self.event_time.snapshot_into("timers/event", snapshot)?;
        self.processing_time.snapshot_into("timers/processing", snapshot)
    }

    /// Restores both kinds of timers from `snapshot`.
    pub fn restore_from(&mut self, snapshot: &StateSnapshot) -> crate::Result<()> {
        self.event_time.restore_from("timers/event", snapshot)?;
        self.processing_time.restore_from("timers/processing", snapshot)
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
mod tests {
    use super::*;

    #[test]
    fn fires_once_in_order_and_skips_deleted() {
        let mut t: TimerStore<&str, ()> = TimerStore::default();
        assert!(t.register(30, 0, &"a", &()));
        assert!(t.register(10, 0, &"b", &()));
        assert!(!t.register(10, 0, &"b", &()), "duplicate ignored");
        assert!(t.register(10, 0, &"c", &()));
        assert!(t.register(20, 0, &"a", &()));
        assert!(t.delete(20, &"a", &()));
        assert_eq!(t.next_timestamp(), Some(10));
        let mut fired = vec![];
        while let Some((ts, _, k, _)) = t.pop_due(25) {
            fired.push((ts, k));
        }
        assert_eq!(fired, vec![(10, "b"), (10, "c")]);
        assert_eq!(t.next_timestamp(), Some(30));
        assert_eq!(t.pop_due(100).map(|x| x.0), Some(30));
        assert!(t.is_empty());
        assert_eq!(t.pop_due(i64::MAX), None);
    }
}
