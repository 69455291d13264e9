//! What one operator subtask contributes to a checkpoint, and how a snapshot taken at one
//! parallelism is split for another.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::key_group::{KeyGroup, KeyGroupRange};

/// The state of one operator subtask at a checkpoint.
///
/// Keyed state is kept per key group (as named blobs: one per state, one per timer domain),
/// so that any key-group range can be cut out of it; operator state is a list of items that
/// are dealt round robin to the subtasks of a job restored at another parallelism (Flink's
/// list state), as sources do with their splits and offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Keyed state: key group → (name, bytes).
    pub key_groups: BTreeMap<KeyGroup, Vec<(String, Vec<u8>)>>,
    /// Operator state items.
    pub operator: Vec<Vec<u8>>,
}

/// Encodes a value for a snapshot (bincode).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| StateError::Serialization(e.to_string()))
}

/// Decodes a value from a snapshot (bincode).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| StateError::Serialization(e.to_string()))
}

impl StateSnapshot {
    /// Whether the snapshot holds nothing.
    pub fn is_empty(&self) -> bool {
        self.key_groups.is_empty() && self.operator.is_empty()
    }

    /// Adds a keyed blob for key group `kg`.
    pub fn add_keyed(&mut self, kg: KeyGroup, name: &str, bytes: Vec<u8>) {
        self.key_groups.entry(kg).or_default().push((name.to_string(), bytes));
    }

    /// The keyed blobs called `name`, by key group.
    pub fn keyed<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (KeyGroup, &'a [u8])> + 'a {
        self.key_groups.iter().flat_map(move |(kg, blobs)| {
            blobs
                .iter()
                .filter(move |(n, _)| n == name)
                .map(move |(_, b)| (*kg, b.as_slice()))
        })
    }

    /// Size in bytes of what the snapshot carries.
    pub fn size(&self) -> usize {
        let keyed: usize = self.key_groups.values().flatten().map(|(n, b)| n.len() + b.len()).sum();
        keyed + self.operator.iter().map(Vec::len).sum::<usize>()
    }

    /// The part of the snapshots of all old subtasks of an operator that subtask `index` of
    /// `parallelism` restores: the key groups of `range`, and every `parallelism`-th
    /// operator-state item.
    ///
    /// ```
    /// use floe_checkpoints::{KeyGroupRange, StateSnapshot};
    /// let mut a = StateSnapshot::default();
    /// a.add_keyed(3, "s", vec![1]);
    /// a.operator.push(vec![10]);
    /// let mut b = StateSnapshot::default();
    /// b.add_keyed(100, "s", vec![2]);
    /// b.operator.push(vec![20]);
    /// let first = StateSnapshot::for_subtask(&[a.clone(), b.clone()], KeyGroupRange::for_subtask(128, 2, 0), 0, 2);
    /// assert_eq!(first.key_groups.keys().collect::<Vec<_>>(), vec![&3]);
    /// assert_eq!(first.operator, vec![vec![10]]);
    /// let only = StateSnapshot::for_subtask(&[a, b], KeyGroupRange::for_subtask(128, 1, 0), 0, 1);
    /// assert_eq!(only.key_groups.len(), 2);
    /// assert_eq!(only.operator.len(), 2);
    /// ```
    pub fn for_subtask(old: &[StateSnapshot], range: KeyGroupRange, index: usize, parallelism: usize) -> StateSnapshot {
        let mut out = StateSnapshot::default();
        for s in old {
            for (kg, blobs) in s.key_groups.range(range.start..range.end) {
                out.key_groups.entry(*kg).or_default().extend(blobs.iter().cloned());
            }
        }
        let items = old.iter().flat_map(|s| s.operator.iter());
        out.operator = items
            .enumerate()
            .filter(|(i, _)| i % parallelism.max(1) == index)
            .map(|(_, item)| item.clone())
            .collect();
        out
    }
}
