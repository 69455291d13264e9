//! Floe's keyed state: key groups, the keyed-state API (value, list, map, reducing and
//! aggregating state with optional TTL) and the state backends that store it.
//!
//! This crate depends on no other Floe crate: the runtime drives it. Operators see state only
//! through [`KeyedStateBackend`] and typed handles such as [`ValueState`]; which backend stores
//! the bytes (in memory now, RocksDB later) is chosen by configuration, not by operator code.

mod backend;
mod checksum;
mod error;
mod identity;
mod key_group;
mod manifest;
mod map_table;
mod memory;
mod objects;
#[cfg(feature = "rocksdb")]
mod rocks;
#[cfg(not(feature = "rocksdb"))]
#[path = "rocks_off.rs"]
mod rocks;
mod snapshot;
mod state;
mod storage;

pub use backend::{KeyedStateBackend, StateBackendKind};
pub use error::{Result, StateError};
pub use identity::{assign_state, StateAssignment};
pub use key_group::{
    assign_key_group, key_group_hash, subtask_for_key_group, KeyGroup, KeyGroupRange, DEFAULT_MAX_PARALLELISM,
};
pub use manifest::{Manifest, OperatorIdentity, SharedFile, StateFile, MANIFEST_VERSION};
pub use rocks::TimerColumn;
pub use snapshot::{decode, encode, StateSnapshot};
pub use state::{
    AggregateFunction, AggregatingState, ListState, MapState, ReduceFn, ReducingState, StateData, StateKey, StateTtl,
    ValueState, VoidNamespace,
};
pub use storage::{CheckpointStorage, RestoredCheckpoint};
