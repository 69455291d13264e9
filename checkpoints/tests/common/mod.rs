//! Helpers shared by the state tests: the backend kinds under test, and a checkpoint of
//! snapshots written through real checkpoint storage.

use std::path::Path;

use floe_checkpoints::{CheckpointStorage, Manifest, StateBackendKind, StateFile, StateSnapshot};

/// Backend kinds under test, by name: the heap, RocksDB, and RocksDB with a cache of
/// `tiny` entries (so that nearly every access goes through RocksDB).
pub fn kinds() -> Vec<&'static str> {
    if cfg!(feature = "rocksdb") {
        vec!["memory", "rocksdb", "rocksdb-tiny-cache"]
    } else {
        vec!["memory"]
    }
}

/// A fresh backend kind, RocksDB in a directory of its own below `dir`.
pub fn kind(name: &str, dir: &Path, tiny: usize) -> StateBackendKind {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = dir.join(format!("db-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    let cache_entries = match name {
        "memory" => return StateBackendKind::Memory,
        "rocksdb" => 100_000,
        _ => tiny,
    };
    StateBackendKind::RocksDb {
        dir,
        cache_entries,
        block_cache_bytes: 1 << 20,
    }
}

/// Writes `snapshots` (one per subtask of node 0) as complete checkpoint 1 into storage in
/// `dir`, and reads them back as a restore would.
pub fn checkpoint(dir: &Path, job: &str, snapshots: &[StateSnapshot]) -> Vec<StateSnapshot> {
    let storage = CheckpointStorage::new(dir, 3).unwrap();
    let files: Vec<StateFile> = snapshots
        .iter()
        .enumerate()
        .map(|(sub, s)| storage.write_state(1, 0, sub, s).unwrap())
        .collect();
    storage
        .complete(&Manifest {
            job: job.into(),
            checkpoint_id: 1,
            timestamp: 0,
            is_savepoint: false,
            parallelism: vec![snapshots.len()],
            files,
            ..Manifest::default()
        })
        .unwrap();
    storage.latest().unwrap().unwrap().node_snapshots(0)
}
