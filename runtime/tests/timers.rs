//! Timer stores on both backends against a simple oracle, and their snapshots restored at
//! other parallelisms and into the other backend.

use std::collections::BTreeSet;

use floe_checkpoints::{
    assign_key_group, CheckpointStorage, KeyGroupRange, KeyedStateBackend, Manifest, StateBackendKind, StateSnapshot,
};
use floe_runtime::TimerService;
use proptest::prelude::*;

/// Backend kinds under test; `rocksdb-16` keeps at most 16 timers in memory, so nearly every
/// operation goes through RocksDB.
fn kinds() -> Vec<&'static str> {
    if cfg!(feature = "rocksdb") {
        vec!["memory", "rocksdb-16", "rocksdb"]
    } else {
        vec!["memory"]
    }
}

fn kind(name: &str, dir: &std::path::Path) -> StateBackendKind {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = dir.join(format!("db-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    match name {
        "memory" => StateBackendKind::Memory,
        "rocksdb-16" => StateBackendKind::RocksDb {
            dir,
            cache_entries: 16,
            block_cache_bytes: 1 << 20,
        },
        _ => StateBackendKind::RocksDb {
            dir,
            cache_entries: 100_000,
            block_cache_bytes: 1 << 20,
        },
    }
}

fn kg(key: u32) -> u16 {
    assign_key_group(&key, 128)
}

#[derive(Clone, Debug)]
enum Op {
    Register(i64, u32),
    Delete(i64, u32),
    Pop(i64),
    Next,
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0i64..300, 0u32..40).prop_map(|(t, k)| Op::Register(t, k)),
        // Many timers of one timestamp, more than a refill takes at once.
        1 => (290i64..293, 0u32..40).prop_map(|(t, k)| Op::Register(t, k)),
        1 => (0i64..300, 0u32..40).prop_map(|(t, k)| Op::Delete(t, k)),
        2 => (0i64..300).prop_map(Op::Pop),
        1 => Just(Op::Next),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the backend and however small the cache, timers fire once, in timestamp
    /// order, exactly when due, and deleted ones never.
    #[test]
    fn timers_behave_like_an_ordered_set(ops in proptest::collection::vec(op(), 1..400)) {
        let tmp = tempfile::tempdir().unwrap();
        for name in kinds() {
            let mut backend: KeyedStateBackend<u32> =
                KeyedStateBackend::new(kind(name, tmp.path()), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
            let mut timers: TimerService<u32, ()> = TimerService::default();
            timers.open(&mut backend, None).unwrap();
            let store = &mut timers.event_time;
            let mut oracle: BTreeSet<(i64, u32)> = BTreeSet::new();
            for op in &ops {
                match *op {
                    Op::Register(t, k) => {
                        store.register(t, kg(k), &k, &());
                        oracle.insert((t, k));
                    }
                    Op::Delete(t, k) => {
                        store.delete(t, kg(k), &k, &());
                        oracle.remove(&(t, k));
                    }
                    Op::Pop(upto) => loop {
                        let got = store.pop_due(upto).unwrap();
                        let due = oracle.first().copied().filter(|(t, _)| *t <= upto);
                        match (got, due) {
                            (None, None) => break,
                            (Some((t, g, k, ())), Some((due_t, _))) => {
                                prop_assert_eq!(t, due_t, "{}: earliest first", name);
                                prop_assert!(oracle.remove(&(t, k)), "{}: fired a timer never registered", name);
                                prop_assert_eq!(g, kg(k));
                            }
                            (got, due) => prop_assert!(false, "{}: fired {:?}, due {:?}", name, got, due),
                        }
                    },
                    Op::Next => {
                        prop_assert_eq!(store.next_timestamp().unwrap(), oracle.first().map(|x| x.0), "{}", name);
                    }
                    Op::Snapshot => {
                        store.snapshot_into("timers/event", &mut StateSnapshot::default()).unwrap();
                    }
                }
                store.maintain().unwrap();
            }
        }
    }
}

/// More timers of one timestamp than the cache holds, all written out to RocksDB, fire
/// once each: a refill never splits a timestamp, and so never stalls on one.
#[test]
fn many_timers_of_one_timestamp_beyond_the_cache_all_fire() {
    let tmp = tempfile::tempdir().unwrap();
    for name in kinds() {
        let mut backend: KeyedStateBackend<u32> =
            KeyedStateBackend::new(kind(name, tmp.path()), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
        let mut timers: TimerService<u32, ()> = TimerService::default();
        timers.open(&mut backend, None).unwrap();
        let store = &mut timers.event_time;
        for k in 0..200u32 {
            store.register(if k < 40 { 5 } else { 7 }, kg(k), &k, &());
            store.maintain().unwrap();
        }
        let mut fired = BTreeSet::new();
        while let Some((ts, _, k, ())) = store.pop_due(10).unwrap() {
            assert_eq!(ts, if k < 40 { 5 } else { 7 }, "{name}");
            assert!(fired.insert(k), "{name}: {k} fired twice");
            assert!(fired.len() <= 200, "{name}");
        }
        assert_eq!(fired.len(), 200, "{name}");
    }
}

/// Timers registered at parallelism 2 (far more than the cache holds) are restored at
/// parallelism 1 and 3, by key group, from heap and RocksDB snapshots into either backend,
/// and each fires exactly once.
#[test]
fn timers_restore_at_any_parallelism_and_across_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let all: BTreeSet<(i64, u32)> = (0..500u32).map(|k| ((k as i64 * 7919) % 1000, k)).collect();
    for from in kinds() {
        let storage = CheckpointStorage::new(tmp.path().join(format!("chk-{from}")), 3).unwrap();
        let mut files = Vec::new();
        for sub in 0..2 {
            let range = KeyGroupRange::for_subtask(128, 2, sub);
            let mut backend: KeyedStateBackend<u32> =
                KeyedStateBackend::new(kind(from, tmp.path()), 128, range).unwrap();
            let mut timers: TimerService<u32, ()> = TimerService::default();
            timers.open(&mut backend, None).unwrap();
            for (t, k) in all.iter().filter(|(_, k)| range.contains(kg(*k))) {
                timers.event_time.register(*t, kg(*k), k, &());
                timers.processing_time.register(*t + 1, kg(*k), k, &());
                timers.maintain().unwrap();
            }
            // One fired before the checkpoint must not come back.
            let first = timers.event_time.pop_due(i64::MAX).unwrap().unwrap();
            assert!(all.contains(&(first.0, first.2)));
            timers.event_time.register(first.0, first.1, &first.2, &());
            let mut s = StateSnapshot::default();
            timers.snapshot_into(&mut s).unwrap();
            backend.snapshot(&mut s).unwrap();
            files.push(storage.write_state(1, 0, sub, &s).unwrap());
        }
        storage
            .complete(&Manifest {
                job: "timers".into(),
                checkpoint_id: 1,
                timestamp: 0,
                is_savepoint: false,
                parallelism: vec![2],
                files,
                ..Manifest::default()
            })
            .unwrap();
        let snapshots = storage.latest().unwrap().unwrap().node_snapshots(0);
        for to in kinds() {
            for p in [1, 2, 3] {
                let mut event = BTreeSet::new();
                let mut processing = BTreeSet::new();
                for sub in 0..p {
                    let range = KeyGroupRange::for_subtask(128, p, sub);
                    let part = StateSnapshot::for_subtask(&snapshots, range, sub, p);
                    let mut backend: KeyedStateBackend<u32> =
                        KeyedStateBackend::new(kind(to, tmp.path()), 128, range).unwrap();
                    backend.restore(&part).unwrap();
                    let mut timers: TimerService<u32, ()> = TimerService::default();
                    timers.open(&mut backend, Some(&part)).unwrap();
                    let mut last = i64::MIN;
                    while let Some((t, g, k, ())) = timers.event_time.pop_due(i64::MAX).unwrap() {
                        assert!(t >= last, "{from}->{to} p{p}: in order");
                        last = t;
                        assert!(range.contains(g));
                        assert!(event.insert((t, k)), "{from}->{to} p{p}: fired twice");
                    }
                    while let Some((t, _, k, ())) = timers.processing_time.pop_due(i64::MAX).unwrap() {
                        assert!(processing.insert((t - 1, k)));
                    }
                }
                assert_eq!(event, all, "{from}->{to} at parallelism {p}");
                assert_eq!(processing, all, "{from}->{to} at parallelism {p}");
            }
        }
    }
}
