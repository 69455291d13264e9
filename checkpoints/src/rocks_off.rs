//! Stands in for the RocksDB store in builds without the `rocksdb` feature: nothing can be
//! constructed, and asking for the RocksDB backend (or restoring a RocksDB snapshot) says how
//! to get it.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::error::{Result, StateError};
use crate::key_group::{KeyGroup, KeyGroupRange};
use crate::snapshot::NativeSnapshot;

fn missing(what: &str) -> StateError {
    StateError::Storage(format!(
        "{what} needs the RocksDB state backend, which is not in this build: build with the \
         `rocksdb` feature (e.g. `cargo run --features floe-dsl/rocksdb ...`), or use --state-backend memory"
    ))
}

/// Never constructed in this build.
pub(crate) struct DbDir(Infallible);

impl DbDir {
    pub(crate) fn open(dir: &Path, _block_cache_bytes: usize) -> Result<Self> {
        Err(missing(&format!("state in {}", dir.display())))
    }

    pub(crate) fn install(&mut self, _native: &NativeSnapshot) -> Result<()> {
        match self.0 {}
    }

    pub(crate) fn checkpoint(&mut self, _cfs: &[&str], _range: KeyGroupRange) -> Result<NativeSnapshot> {
        match self.0 {}
    }

    pub(crate) fn store<K, N, S>(&self, _name: &str) -> Result<RocksStore<K, N, S>> {
        match self.0 {}
    }

    pub(crate) fn scratch(&self) -> PathBuf {
        match self.0 {}
    }
}

/// Restoring a RocksDB snapshot needs RocksDB.
pub(crate) fn read_native(
    _native: &NativeSnapshot,
    _scratch: &Path,
    _range: KeyGroupRange,
) -> Result<Vec<(String, KeyGroup, Vec<u8>)>> {
    Err(missing("restoring a checkpoint taken with RocksDB state"))
}

/// Never constructed in this build.
pub(crate) struct RocksStore<K, N, S>(Infallible, PhantomData<fn(K, N, S)>);

impl<K, N, S> RocksStore<K, N, S> {
    pub(crate) fn load(&self, _kg: KeyGroup, _key: &K, _ns: &N) -> Result<Option<(S, i64)>> {
        match self.0 {}
    }

    pub(crate) fn write<'a>(
        &self,
        _changes: impl Iterator<Item = (KeyGroup, &'a K, &'a N, Option<(&'a S, i64)>)>,
    ) -> Result<()>
    where
        K: 'a,
        N: 'a,
        S: 'a,
    {
        match self.0 {}
    }

    pub(crate) fn scan_group(&self, _kg: KeyGroup) -> Result<Vec<(K, N, S, i64)>> {
        match self.0 {}
    }

    pub(crate) fn merge<'a>(&self, _appends: impl Iterator<Item = (KeyGroup, &'a K, &'a N, &'a S, i64)>) -> Result<()>
    where
        K: 'a,
        N: 'a,
        S: 'a,
    {
        match self.0 {}
    }
}

impl<K, N, UK, S> RocksStore<K, (N, UK), S> {
    pub(crate) fn scan_prefix(&self, _kg: KeyGroup, _key: &K, _ns: &N) -> Result<Vec<(UK, S, i64)>> {
        match self.0 {}
    }
}

/// Never constructed in this build.
pub struct TimerColumn(Infallible);

impl TimerColumn {
    /// Writes timers and deletions (never called in this build).
    pub fn write<'a>(&self, _changes: impl Iterator<Item = (&'a [u8], bool)>) -> Result<()> {
        match self.0 {}
    }

    /// Visits timers of a key group (never called in this build).
    pub fn scan(&self, _kg: KeyGroup, _from: [u8; 8], _visit: impl FnMut(&[u8]) -> bool) -> Result<()> {
        match self.0 {}
    }
}

impl DbDir {
    pub(crate) fn timers(&self, _name: &str) -> Result<TimerColumn> {
        match self.0 {}
    }
}
