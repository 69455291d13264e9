//! The keyed-state suite: every backend kind must pass it unchanged.

use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::{
    assign_key_group, AggregateFunction, KeyGroupRange, KeyedStateBackend, StateBackendKind, StateError, StateTtl,
};

/// Every backend kind under test, by name.
fn backends() -> Vec<&'static str> {
    vec!["memory", "rocksdb", "rocksdb-tiny-cache"]
}

/// A fresh backend kind (RocksDB in a directory of its own; the tiny cache makes every
/// access go through RocksDB).
fn kind(name: &str) -> StateBackendKind {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "floe-state-suite-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    match name {
        "memory" => StateBackendKind::Memory,
        "rocksdb" => StateBackendKind::RocksDb {
            dir,
            cache_entries: 100_000,
            block_cache_bytes: 8 << 20,
        },
        _ => StateBackendKind::RocksDb {
            dir,
            cache_entries: 0,
            block_cache_bytes: 8 << 20,
        },
    }
}

fn backend(name: &str) -> KeyedStateBackend<String> {
    KeyedStateBackend::new(kind(name), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap()
}

fn kg(key: &str) -> u16 {
    assign_key_group(&key.to_string(), 128)
}

struct Avg;
impl AggregateFunction<i64> for Avg {
    type Acc = (i64, u64);
    type Out = f64;
    fn create_accumulator(&self) -> (i64, u64) {
        (0, 0)
    }
    fn add(&self, v: &i64, acc: &mut (i64, u64)) {
        acc.0 += v;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, u64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, acc: &mut (i64, u64), o: (i64, u64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
}

#[test]
fn value_state_is_scoped_to_key_and_namespace() {
    for kind in backends() {
        let mut b = backend(kind);
        let h = b.value_state::<u64, u32>("v", None).unwrap();
        let (a, z) = ("a".to_string(), "z".to_string());
        b.value_set(&h, kg("a"), &a, &1, 10).unwrap();
        b.value_set(&h, kg("a"), &a, &2, 20).unwrap();
        b.value_set(&h, kg("z"), &z, &1, 30).unwrap();
        assert_eq!(b.value_get(&h, kg("a"), &a, &1).unwrap(), Some(10));
        assert_eq!(b.value_get(&h, kg("a"), &a, &2).unwrap(), Some(20));
        assert_eq!(b.value_get(&h, kg("z"), &z, &1).unwrap(), Some(30));
        assert_eq!(b.value_get(&h, kg("z"), &z, &2).unwrap(), None);
        let r = b.value_update(
            &h,
            kg("a"),
            &a,
            &1,
            || 0,
            |v| {
                *v += 5;
                *v
            },
        );
        assert_eq!(r.unwrap(), 15);
        b.value_clear(&h, kg("a"), &a, &1).unwrap();
        assert_eq!(b.value_get(&h, kg("a"), &a, &1).unwrap(), None);
        let mut entries = b.value_entries(&h).unwrap();
        entries.sort_by_key(|e| e.2);
        assert_eq!(entries, vec![(a.clone(), 2, 20), (z.clone(), 1, 30)]);
    }
}

#[test]
fn list_map_reducing_aggregating() {
    for kind in backends() {
        let mut b = backend(kind);
        let k = "k".to_string();
        let g = kg("k");
        let list = b.list_state::<i64, ()>("list", None).unwrap();
        assert!(b.list_get(&list, g, &k, &()).unwrap().is_empty());
        for v in [3, 1, 2] {
            b.list_add(&list, g, &k, &(), v).unwrap();
        }
        assert_eq!(b.list_get(&list, g, &k, &()).unwrap(), vec![3, 1, 2]);
        b.list_replace(&list, g, &k, &(), vec![9]).unwrap();
        assert_eq!(b.list_get(&list, g, &k, &()).unwrap(), vec![9]);

        let map = b.map_state::<String, u32, ()>("map", None).unwrap();
        b.map_put(&map, g, &k, &(), "x".into(), 1).unwrap();
        b.map_put(&map, g, &k, &(), "y".into(), 2).unwrap();
        b.map_put(&map, g, &k, &(), "x".into(), 3).unwrap();
        assert_eq!(b.map_get(&map, g, &k, &(), &"x".to_string()).unwrap(), Some(3));
        assert_eq!(b.map_remove(&map, g, &k, &(), &"y".to_string()).unwrap(), Some(2));
        assert_eq!(b.map_entries(&map, g, &k, &()).unwrap(), vec![("x".to_string(), 3)]);

        let red = b
            .reducing_state::<i64, ()>("red", None, |a, b| a.max(b).to_owned())
            .unwrap();
        for v in [4, 9, 2] {
            b.reducing_add(&red, g, &k, &(), v).unwrap();
        }
        assert_eq!(b.reducing_get(&red, g, &k, &()).unwrap(), Some(9));

        let agg = b.aggregating_state::<i64, Avg, u8>("avg", None, Arc::new(Avg)).unwrap();
        assert!(b.aggregating_add(&agg, g, &k, &1, &2).unwrap(), "first add creates");
        assert!(!b.aggregating_add(&agg, g, &k, &1, &4).unwrap());
        b.aggregating_add(&agg, g, &k, &2, &12).unwrap();
        assert_eq!(b.aggregating_get(&agg, g, &k, &1).unwrap(), Some(3.0));
        b.aggregating_merge(&agg, g, &k, &[1, 2], &3).unwrap();
        assert_eq!(b.aggregating_get(&agg, g, &k, &3).unwrap(), Some(6.0));
        assert_eq!(
            b.aggregating_get(&agg, g, &k, &1).unwrap(),
            None,
            "sources are consumed by a merge"
        );

        let l2 = b.list_state::<i64, u8>("list-ns", None).unwrap();
        b.list_add(&l2, g, &k, &1, 1).unwrap();
        b.list_add(&l2, g, &k, &2, 2).unwrap();
        b.list_merge(&l2, g, &k, &[1, 2], &2).unwrap();
        let mut merged = b.list_get(&l2, g, &k, &2).unwrap();
        merged.sort();
        assert_eq!(merged, vec![1, 2]);
    }
}

#[test]
fn ttl_hides_and_purges_expired_entries() {
    for kind in backends() {
        let mut b = backend(kind);
        let ttl = Some(StateTtl::new(Duration::from_millis(100)));
        let h = b.value_state::<u64, ()>("ttl", ttl).unwrap();
        for i in 0..50u64 {
            let k = format!("k{i}");
            b.value_set(&h, kg(&k), &k, &(), i).unwrap();
        }
        b.set_processing_time(99).unwrap();
        let k0 = "k0".to_string();
        assert_eq!(b.value_get(&h, kg("k0"), &k0, &()).unwrap(), Some(0));
        b.value_set(&h, kg("k0"), &k0, &(), 7).unwrap(); // written at 99: lives until 199
        b.set_processing_time(150).unwrap();
        assert_eq!(b.value_get(&h, kg("k0"), &k0, &()).unwrap(), Some(7));
        let k1 = "k1".to_string();
        assert_eq!(b.value_get(&h, kg("k1"), &k1, &()).unwrap(), None, "expired at 100");
        b.set_processing_time(1_000).unwrap();
        assert_eq!(b.len(), 0, "expired entries are purged even if never read again");
    }
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    for kind in backends() {
        let mut b: KeyedStateBackend<String> =
            KeyedStateBackend::new(self::kind(kind), 128, KeyGroupRange::for_subtask(128, 2, 0)).unwrap();
        let h = b.value_state::<u64, ()>("v", None).unwrap();
        assert!(matches!(
            b.value_state::<String, ()>("v", None),
            Err(StateError::TypeMismatch { .. })
        ));
        let foreign = KeyGroupRange::for_subtask(128, 2, 1).start;
        let k = "k".to_string();
        assert!(matches!(
            b.value_get(&h, foreign, &k, &()),
            Err(StateError::ForeignKeyGroup { .. })
        ));
        let mut other: KeyedStateBackend<String> =
            KeyedStateBackend::new(self::kind(kind), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
        assert!(matches!(
            other.value_get(&h, 0, &k, &()),
            Err(StateError::UnknownHandle(_))
        ));
    }
}

#[test]
fn snapshot_restores_at_any_parallelism_by_key_group() {
    use floe_checkpoints::{CheckpointStorage, Manifest, StateSnapshot};
    for kind in backends() {
        // Write 200 keys into two subtasks, as a job at parallelism 2 would, and checkpoint
        // them through checkpoint storage.
        let storage_dir = tempfile::tempdir().unwrap();
        let storage = CheckpointStorage::new(storage_dir.path(), 3).unwrap();
        let mut files = Vec::new();
        for sub in 0..2 {
            let range = KeyGroupRange::for_subtask(128, 2, sub);
            let mut b: KeyedStateBackend<String> = KeyedStateBackend::new(self::kind(kind), 128, range).unwrap();
            let v = b.value_state::<u64, ()>("count", None).unwrap();
            let l = b.list_state::<u32, u8>("seen", None).unwrap();
            for i in 0..200u64 {
                let k = format!("k{i}");
                if range.contains(kg(&k)) {
                    b.value_set(&v, kg(&k), &k, &(), i).unwrap();
                    b.list_add(&l, kg(&k), &k, &7, i as u32).unwrap();
                }
            }
            let mut s = StateSnapshot::default();
            b.snapshot(&mut s).unwrap();
            files.push(storage.write_state(1, 0, sub, &s).unwrap());
        }
        storage
            .complete(&Manifest {
                job: "suite".into(),
                checkpoint_id: 1,
                timestamp: 0,
                is_savepoint: false,
                parallelism: vec![2],
                files,
                ..Manifest::default()
            })
            .unwrap();
        let snapshots = storage.latest().unwrap().unwrap().node_snapshots(0);
        for p in [1, 2, 3] {
            let mut restored = 0;
            for sub in 0..p {
                let range = KeyGroupRange::for_subtask(128, p, sub);
                let part = StateSnapshot::for_subtask(&snapshots, range, sub, p);
                let mut b: KeyedStateBackend<String> = KeyedStateBackend::new(self::kind(kind), 128, range).unwrap();
                b.restore(&part).unwrap(); // before registration: decoded when registered
                let v = b.value_state::<u64, ()>("count", None).unwrap();
                let l = b.list_state::<u32, u8>("seen", None).unwrap();
                for i in 0..200u64 {
                    let k = format!("k{i}");
                    if range.contains(kg(&k)) {
                        assert_eq!(b.value_get(&v, kg(&k), &k, &()).unwrap(), Some(i), "p {p}");
                        assert_eq!(b.list_get(&l, kg(&k), &k, &7).unwrap(), vec![i as u32]);
                        restored += 1;
                    }
                }
            }
            assert_eq!(restored, 200, "every key restored exactly once at parallelism {p}");
        }
    }
}
