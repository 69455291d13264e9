//! Incremental RocksDB checkpoints through checkpoint storage: a second checkpoint with little
//! change uploads far fewer bytes than the first, SST files are shared between checkpoints and
//! deleted once no retained checkpoint references them, and the latest checkpoint restores
//! exactly, into RocksDB or onto the heap, at the same or another parallelism.
#![cfg(feature = "rocksdb")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use floe_checkpoints::{
    assign_key_group, CheckpointStorage, KeyGroupRange, KeyedStateBackend, Manifest, StateBackendKind, StateSnapshot,
};

const KEYS: u64 = 20_000;

fn rocks(dir: &Path) -> StateBackendKind {
    StateBackendKind::RocksDb {
        dir: dir.to_path_buf(),
        cache_entries: 1_000,
        block_cache_bytes: 8 << 20,
    }
}

/// 100 bytes that compress poorly, different for every key and round.
fn value(key: u64, round: u64) -> String {
    let mut x = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn checkpoint(storage: &CheckpointStorage, b: &mut KeyedStateBackend<u64>, id: u64) -> Manifest {
    let mut s = StateSnapshot::default();
    b.snapshot(&mut s).unwrap();
    let manifest = Manifest {
        job: "incremental".into(),
        checkpoint_id: id,
        timestamp: 0,
        is_savepoint: false,
        parallelism: vec![1],
        files: vec![storage.write_state(id, 0, 0, &s).unwrap()],
        ..Manifest::default()
    };
    storage.complete(&manifest).unwrap();
    manifest
}

fn shared_names(m: &Manifest) -> BTreeSet<String> {
    m.files.iter().flat_map(|f| &f.shared).map(|s| s.name.clone()).collect()
}

#[test]
fn second_checkpoint_uploads_only_what_changed_and_restores_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let chk = tmp.path().join("chk");
    incremental_round_trip(tmp.path(), &chk, Some(&chk.join("shared")));
}

/// The same through a `file://` URL: object_store addresses the directory.
#[test]
fn file_urls_address_the_same_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let chk = tmp.path().join("chk");
    let url = url::Url::from_directory_path(&chk).unwrap();
    incremental_round_trip(tmp.path(), Path::new(url.as_str()), Some(&chk.join("shared")));
}

/// And through an object store that is not a file system (`memory://`): shared files are
/// fetched back for the restore instead of being linked.
#[test]
fn stores_without_local_files_restore_by_fetching() {
    let tmp = tempfile::tempdir().unwrap();
    incremental_round_trip(tmp.path(), Path::new("memory://"), None);
}

#[test]
fn unsupported_locations_fail_saying_what_works() {
    let err = CheckpointStorage::new("s3://bucket/chk", 2).unwrap_err().to_string();
    assert!(err.contains("s3://bucket/chk") && err.contains("file://"), "{err}");
    let err = CheckpointStorage::new("file://not a url", 2).unwrap_err().to_string();
    assert!(err.contains("not a valid URL"), "{err}");
}

/// Checkpoints into `location`, the state directory under `tmp`; `shared`, when the store is
/// local, is where shared files land.
fn incremental_round_trip(tmp: &Path, location: &Path, shared: Option<&Path>) {
    let storage = CheckpointStorage::new(location.to_path_buf(), 2).unwrap();
    let range = KeyGroupRange::for_subtask(128, 1, 0);
    let mut b = KeyedStateBackend::<u64>::new(rocks(&tmp.join("state")), 128, range).unwrap();
    let v = b.value_state::<String, ()>("v", None).unwrap();
    let mut expected = BTreeMap::new();
    let mut set = |b: &mut KeyedStateBackend<u64>, key: u64, round: u64| {
        b.value_set(&v, assign_key_group(&key, 128), &key, &(), value(key, round))
            .unwrap();
        b.set_processing_time(0).unwrap(); // lets the cache spill, as operators do per batch
        expected.insert(key, value(key, round));
    };
    for key in 0..KEYS {
        set(&mut b, key, 0);
    }
    let first = checkpoint(&storage, &mut b, 1);
    for key in (0..KEYS).step_by(100) {
        set(&mut b, key, 1);
    }
    let second = checkpoint(&storage, &mut b, 2);
    assert!(
        first.uploaded() > 1_000_000,
        "first checkpoint uploads the state: {}",
        first.uploaded()
    );
    assert!(
        second.uploaded() * 10 < first.uploaded(),
        "1% changed: uploaded {} after {}",
        second.uploaded(),
        first.uploaded()
    );
    assert!(
        second.size() > first.size(),
        "the second references the first's files too"
    );
    assert!(!shared_names(&first).is_disjoint(&shared_names(&second)));

    // More rounds: retention keeps two checkpoints, and exactly the files they reference.
    for round in 2..=4 {
        for key in (round..KEYS).step_by(100) {
            set(&mut b, key, round);
        }
        checkpoint(&storage, &mut b, round + 1);
    }
    let kept: Vec<Manifest> = [4, 5].iter().map(|id| storage.load(*id).unwrap().manifest).collect();
    let referenced: BTreeSet<String> = kept.iter().flat_map(shared_names).collect();
    if let Some(shared) = shared {
        let stored: BTreeSet<String> = std::fs::read_dir(shared)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(stored, referenced, "unreferenced shared files are deleted");
    }
    assert!(storage.load(3).is_err(), "checkpoint 3 was pruned");
    drop(b);

    let latest = storage.latest().unwrap().unwrap();
    assert_eq!(latest.manifest.checkpoint_id, 5);
    let old = latest.node_snapshots(0);
    for (backend, p) in [("rocksdb", 1), ("rocksdb", 2), ("memory", 1), ("memory", 3)] {
        let mut restored = 0;
        for sub in 0..p {
            let range = KeyGroupRange::for_subtask(128, p, sub);
            let kind = match backend {
                "memory" => StateBackendKind::Memory,
                _ => rocks(&tmp.join(format!("restore-{p}-{sub}"))),
            };
            let mut r = KeyedStateBackend::<u64>::new(kind, 128, range).unwrap();
            r.restore(&StateSnapshot::for_subtask(&old, range, sub, p)).unwrap();
            let v = r.value_state::<String, ()>("v", None).unwrap();
            for (key, want) in &expected {
                let kg = assign_key_group(key, 128);
                if range.contains(kg) {
                    assert_eq!(
                        r.value_get(&v, kg, key, &()).unwrap().as_ref(),
                        Some(want),
                        "{backend} p={p}"
                    );
                    restored += 1;
                }
            }
        }
        assert_eq!(restored, KEYS, "{backend} at parallelism {p} holds every key once");
    }
}
