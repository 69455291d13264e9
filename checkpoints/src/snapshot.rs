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
    /// Union operator state items: every subtask restores all of them, from every old
    /// subtask (Flink's union list state, as the Kafka source uses for its offsets: the
    /// partitions a subtask reads may have been read by any old subtask).
    #[serde(default)]
    pub union: Vec<Vec<u8>>,
    /// Keyed state as database files (the RocksDB backend), one per old subtask whose key
    /// groups overlap the range of the subtask that restores it.
    #[serde(default)]
    pub native: Vec<NativeSnapshot>,
}

/// The keyed state of one RocksDB backend at a checkpoint: its immutable SST files, shared
/// between checkpoints (an SST that storage holds already is referenced, not copied again),
/// and the small files that describe the database, inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeSnapshot {
    /// The key groups the database holds.
    pub range: KeyGroupRange,
    /// Its SST files.
    pub sst: Vec<SstFile>,
    /// Its other files (CURRENT, MANIFEST, OPTIONS) by name, with their contents.
    pub private: Vec<(String, Vec<u8>)>,
    /// Before upload: the local directory the files are in (removed once uploaded).
    #[serde(skip)]
    pub local_dir: Option<std::path::PathBuf>,
}

/// One SST file of a [`NativeSnapshot`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstFile {
    /// Its name in the database directory.
    pub local_name: String,
    /// Its name in the checkpoint storage's shared directory (unique across databases).
    pub shared_name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Where the file is now: the local checkpoint before upload, the storage after load.
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// Its checksum (xxh3-64), when known without reading it: verified on restore, so the
    /// database that restored it need not have it read again when it uploads it.
    #[serde(skip)]
    pub checksum: Option<u64>,
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
        self.key_groups.is_empty() && self.operator.is_empty() && self.union.is_empty() && self.native.is_empty()
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
        let native: u64 = self
            .native
            .iter()
            .map(|n| {
                n.sst.iter().map(|f| f.bytes).sum::<u64>() + n.private.iter().map(|p| p.1.len() as u64).sum::<u64>()
            })
            .sum();
        keyed
            + self.operator.iter().map(Vec::len).sum::<usize>()
            + self.union.iter().map(Vec::len).sum::<usize>()
            + native as usize
    }

    /// The part of the snapshots of all old subtasks of an operator that subtask `index` of
    /// `parallelism` restores: the key groups of `range`, the database snapshots that overlap
    /// it, every `parallelism`-th operator-state item, and all union items.
    ///
    /// ```
    /// use floe_checkpoints::{KeyGroupRange, StateSnapshot};
    /// let mut a = StateSnapshot::default();
    /// a.add_keyed(3, "s", vec![1]);
    /// a.operator.push(vec![10]);
    /// a.union.push(vec![7]);
    /// let mut b = StateSnapshot::default();
    /// b.add_keyed(100, "s", vec![2]);
    /// b.operator.push(vec![20]);
    /// let first = StateSnapshot::for_subtask(&[a.clone(), b.clone()], KeyGroupRange::for_subtask(128, 2, 0), 0, 2);
    /// assert_eq!(first.key_groups.keys().collect::<Vec<_>>(), vec![&3]);
    /// assert_eq!(first.operator, vec![vec![10]]);
    /// assert_eq!(first.union, vec![vec![7]]);
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
            let overlapping = s
                .native
                .iter()
                .filter(|n| n.range.start < range.end && range.start < n.range.end);
            out.native.extend(overlapping.cloned());
        }
        let items = old.iter().flat_map(|s| s.operator.iter());
        out.operator = items
            .enumerate()
            .filter(|(i, _)| i % parallelism.max(1) == index)
            .map(|(_, item)| item.clone())
            .collect();
        out.union = old.iter().flat_map(|s| s.union.iter().cloned()).collect();
        out
    }
}
