//! The in-memory (heap) backend: one hash table per state, split by key group.

use std::any::Any;
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

use crate::error::Result;
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::snapshot::{decode, encode};
use crate::state::{StateData, StateKey};

/// Expiry time meaning "never".
pub(crate) const NEVER: i64 = i64::MAX;

/// One stored value and when it expires.
pub(crate) struct Entry<S> {
    pub(crate) value: S,
    pub(crate) expires_at: i64,
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

/// The table of one state: `(key, namespace) -> S`, one map per key group of the range.
pub(crate) struct Table<K, N, S> {
    range: KeyGroupRange,
    groups: Vec<HashMap<(K, N), Entry<S>>>,
}

impl<K: StateKey, N: StateKey, S: Send + 'static> Table<K, N, S> {
    pub(crate) fn new(range: KeyGroupRange) -> Self {
        Table {
            range,
            groups: (0..range.len()).map(|_| HashMap::new()).collect(),
        }
    }

    fn group(&mut self, kg: KeyGroup) -> &mut HashMap<(K, N), Entry<S>> {
        let i = usize::from(kg.wrapping_sub(self.range.start));
        &mut self.groups[i]
    }

    /// The live entry of `(key, ns)`, dropping it first if it expired.
    pub(crate) fn get_mut(&mut self, kg: KeyGroup, key: &K, ns: &N, now: i64) -> Option<&mut Entry<S>> {
        let group = self.group(kg);
        let lookup = Lookup(key, ns);
        let expired = match group.get(&lookup) {
            None => return None,
            Some(e) => e.expires_at <= now,
        };
        if expired {
            group.remove(&lookup);
            return None;
        }
        group.get_mut(&lookup)
    }

    /// The entry of `(key, ns)`, created with `init` if absent or expired.
    pub(crate) fn get_or_insert_with(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        now: i64,
        init: impl FnOnce() -> S,
    ) -> &mut Entry<S> {
        let group = self.group(kg);
        let lookup = Lookup(key, ns);
        let live = matches!(group.get(&lookup), Some(e) if e.expires_at > now);
        if !live {
            group.insert(
                (key.clone(), ns.clone()),
                Entry {
                    value: init(),
                    expires_at: NEVER,
                },
            );
        }
        group.get_mut(&lookup).expect("entry was just ensured")
    }

    pub(crate) fn remove(&mut self, kg: KeyGroup, key: &K, ns: &N, now: i64) -> Option<S> {
        let e = self.group(kg).remove(&Lookup(key, ns))?;
        (e.expires_at > now).then_some(e.value)
    }

    /// Every live `(key, namespace)` of one key group with its value.
    pub(crate) fn iter_group(&self, kg: KeyGroup, now: i64) -> impl Iterator<Item = (&K, &N, &S)> {
        let i = usize::from(kg.wrapping_sub(self.range.start));
        self.groups[i]
            .iter()
            .filter(move |(_, e)| e.expires_at > now)
            .map(|((k, n), e)| (k, n, &e.value))
    }
}

/// Operations on a table that need not know its types.
pub(crate) trait AnyTable: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Drops expired entries; returns how many were dropped.
    fn purge_expired(&mut self, now: i64) -> usize;
    /// Number of stored entries, expired or not.
    fn len(&self) -> usize;
    /// The live entries of key group `kg`, encoded; `None` if there are none.
    fn snapshot_group(&self, kg: KeyGroup, now: i64) -> Result<Option<Vec<u8>>>;
    /// Adds the entries of a blob made by `snapshot_group`.
    fn restore_group(&mut self, kg: KeyGroup, bytes: &[u8]) -> Result<()>;
}

impl<K: StateKey, N: StateKey, S: StateData> AnyTable for Table<K, N, S> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn purge_expired(&mut self, now: i64) -> usize {
        let mut dropped = 0;
        for g in &mut self.groups {
            let before = g.len();
            g.retain(|_, e| e.expires_at > now);
            dropped += before - g.len();
        }
        dropped
    }

    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    fn snapshot_group(&self, kg: KeyGroup, now: i64) -> Result<Option<Vec<u8>>> {
        let i = usize::from(kg.wrapping_sub(self.range.start));
        let entries: Vec<(&K, &N, &S, i64)> = self.groups[i]
            .iter()
            .filter(|(_, e)| e.expires_at > now)
            .map(|((k, n), e)| (k, n, &e.value, e.expires_at))
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        encode(&entries).map(Some)
    }

    fn restore_group(&mut self, kg: KeyGroup, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(K, N, S, i64)> = decode(bytes)?;
        let group = self.group(kg);
        for (k, n, value, expires_at) in entries {
            group.insert((k, n), Entry { value, expires_at });
        }
        Ok(())
    }
}
