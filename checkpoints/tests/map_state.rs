//! Map state on every backend against a `HashMap` oracle: entries written blindly, read
//! point-wise and by prefix iteration, with caches far smaller than the maps, and restored
//! from checkpoints at other parallelisms and into the other backend.

use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::kinds;
use floe_checkpoints::{assign_key_group, KeyGroupRange, KeyedStateBackend, StateBackendKind, StateSnapshot};
use proptest::prelude::*;

fn kind(name: &str, dir: &std::path::Path) -> StateBackendKind {
    common::kind(name, dir, 4)
}

fn kg(key: u8) -> u16 {
    assign_key_group(&key, 128)
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8, u16),
    Remove(u8, u8),
    Get(u8, u8),
    Entries(u8),
    Clear(u8),
    /// Lets the backend write out and evict (as it does once per batch).
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..6, 0u8..30, any::<u16>()).prop_map(|(k, u, v)| Op::Put(k, u, v)),
        2 => (0u8..6, 0u8..30).prop_map(|(k, u)| Op::Remove(k, u)),
        3 => (0u8..6, 0u8..30).prop_map(|(k, u)| Op::Get(k, u)),
        2 => (0u8..6).prop_map(Op::Entries),
        1 => (0u8..6).prop_map(Op::Clear),
        2 => Just(Op::Tick),
    ]
}

type Oracle = BTreeMap<u8, BTreeMap<u8, u16>>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn map_state_behaves_like_a_map_of_maps(ops in proptest::collection::vec(op(), 1..200)) {
        let tmp = tempfile::tempdir().unwrap();
        for name in kinds() {
            let mut b: KeyedStateBackend<u8> =
                KeyedStateBackend::new(kind(name, tmp.path()), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
            let h = b.map_state::<u8, u16, ()>("m", None).unwrap();
            let mut oracle = Oracle::new();
            for (t, op) in ops.iter().enumerate() {
                match *op {
                    Op::Put(k, u, v) => {
                        b.map_put(&h, kg(k), &k, &(), u, v).unwrap();
                        oracle.entry(k).or_default().insert(u, v);
                    }
                    Op::Remove(k, u) => {
                        let got = b.map_remove(&h, kg(k), &k, &(), &u).unwrap();
                        let want = oracle.entry(k).or_default().remove(&u);
                        prop_assert_eq!(got, want, "{}: remove", name);
                    }
                    Op::Get(k, u) => {
                        let got = b.map_get(&h, kg(k), &k, &(), &u).unwrap();
                        let want = oracle.get(&k).and_then(|m| m.get(&u)).copied();
                        prop_assert_eq!(got, want, "{}: get", name);
                    }
                    Op::Entries(k) => {
                        let got: BTreeMap<u8, u16> = b.map_entries(&h, kg(k), &k, &()).unwrap().into_iter().collect();
                        prop_assert_eq!(got, oracle.get(&k).cloned().unwrap_or_default(), "{}: entries", name);
                    }
                    Op::Clear(k) => {
                        b.map_clear(&h, kg(k), &k, &()).unwrap();
                        oracle.remove(&k);
                    }
                    Op::Tick => b.set_processing_time(t as i64).unwrap(),
                }
            }
        }
    }
}

/// Maps written at parallelism 2 (each far larger than the tiny cache) restore at 1, 2 and
/// 3, from either backend into either backend.
#[test]
fn maps_restore_at_any_parallelism_and_across_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<u8> = (0..40).collect();
    let expected = |k: u8| -> BTreeMap<u8, u16> {
        (0..(k % 7 + 1) * 5)
            .map(|u| (u, u16::from(u) * 3 + u16::from(k)))
            .collect()
    };
    for from in kinds() {
        let mut written = Vec::new();
        for sub in 0..2 {
            let range = KeyGroupRange::for_subtask(128, 2, sub);
            let mut b: KeyedStateBackend<u8> = KeyedStateBackend::new(kind(from, tmp.path()), 128, range).unwrap();
            let h = b.map_state::<u8, u16, u8>("m", None).unwrap();
            for &k in keys.iter().filter(|k| range.contains(kg(**k))) {
                for (u, v) in expected(k) {
                    b.map_put(&h, kg(k), &k, &1, u, v).unwrap();
                }
                // A removed entry stays removed.
                b.map_put(&h, kg(k), &k, &1, 200, 1).unwrap();
                b.set_processing_time(0).unwrap();
                b.map_remove(&h, kg(k), &k, &1, &200).unwrap();
            }
            let mut s = StateSnapshot::default();
            b.snapshot(&mut s).unwrap();
            written.push(s);
        }
        let snapshots = common::checkpoint(&tmp.path().join(format!("chk-{from}")), "maps", &written);
        for to in kinds() {
            for p in [1, 2, 3] {
                let mut seen = BTreeSet::new();
                for sub in 0..p {
                    let range = KeyGroupRange::for_subtask(128, p, sub);
                    let part = StateSnapshot::for_subtask(&snapshots, range, sub, p);
                    let mut b: KeyedStateBackend<u8> =
                        KeyedStateBackend::new(kind(to, tmp.path()), 128, range).unwrap();
                    b.restore(&part).unwrap();
                    let h = b.map_state::<u8, u16, u8>("m", None).unwrap();
                    for &k in keys.iter().filter(|k| range.contains(kg(**k))) {
                        let got: BTreeMap<u8, u16> = b.map_entries(&h, kg(k), &k, &1).unwrap().into_iter().collect();
                        assert_eq!(got, expected(k), "{from}->{to} p{p} key {k}");
                        assert_eq!(b.map_get(&h, kg(k), &k, &1, &0).unwrap(), Some(u16::from(k)));
                        assert!(seen.insert(k));
                    }
                }
                assert_eq!(seen.len(), keys.len(), "{from}->{to} p{p}: every key once");
            }
        }
    }
}
