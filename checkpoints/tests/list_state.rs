//! List state on every backend against a `Vec` oracle: appends that do not read the stored
//! list (a RocksDB merge), reads, replaces and clears, with caches far smaller than the data,
//! and checkpoints restored at other parallelisms and into the other backend.

use std::collections::BTreeMap;

mod common;

use common::kinds;
use floe_checkpoints::{assign_key_group, KeyGroupRange, KeyedStateBackend, StateBackendKind, StateSnapshot, StateTtl};
use proptest::prelude::*;

fn kind(name: &str, dir: &std::path::Path) -> StateBackendKind {
    common::kind(name, dir, 2)
}

fn kg(key: u8) -> u16 {
    assign_key_group(&key, 128)
}

#[derive(Clone, Debug)]
enum Op {
    Add(u8, String),
    Get(u8),
    Replace(u8, Vec<String>),
    Clear(u8),
    Tick,
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..5, "[a-z]{0,3}").prop_map(|(k, v)| Op::Add(k, v)),
        3 => (0u8..5).prop_map(Op::Get),
        1 => (0u8..5, proptest::collection::vec("[a-z]{0,2}", 0..3)).prop_map(|(k, v)| Op::Replace(k, v)),
        1 => (0u8..5).prop_map(Op::Clear),
        2 => Just(Op::Tick),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn list_state_behaves_like_vectors(ops in proptest::collection::vec(op(), 1..150), ttl in any::<bool>()) {
        let tmp = tempfile::tempdir().unwrap();
        for name in kinds() {
            let mut b: KeyedStateBackend<u8> =
                KeyedStateBackend::new(kind(name, tmp.path()), 128, KeyGroupRange::for_subtask(128, 1, 0)).unwrap();
            let ttl = ttl.then(|| StateTtl::new(std::time::Duration::from_secs(3600)));
            let h = b.list_state::<String, ()>("l", ttl).unwrap();
            let mut oracle: BTreeMap<u8, Vec<String>> = BTreeMap::new();
            for (t, op) in ops.iter().enumerate() {
                match op {
                    Op::Add(k, v) => {
                        b.list_add(&h, kg(*k), k, &(), v.clone()).unwrap();
                        oracle.entry(*k).or_default().push(v.clone());
                    }
                    Op::Get(k) => {
                        let got = b.list_get(&h, kg(*k), k, &()).unwrap();
                        prop_assert_eq!(got, oracle.get(k).cloned().unwrap_or_default(), "{}", name);
                    }
                    Op::Replace(k, vs) => {
                        b.list_replace(&h, kg(*k), k, &(), vs.clone()).unwrap();
                        oracle.insert(*k, vs.clone());
                    }
                    Op::Clear(k) => {
                        b.list_clear(&h, kg(*k), k, &()).unwrap();
                        oracle.remove(k);
                    }
                    Op::Tick => b.set_processing_time(t as i64).unwrap(),
                    Op::Snapshot => b.snapshot(&mut StateSnapshot::default()).unwrap(),
                }
            }
            for (k, want) in &oracle {
                prop_assert_eq!(&b.list_get(&h, kg(*k), k, &()).unwrap(), want, "{}: end", name);
            }
        }
    }
}

/// Lists appended to across several flushes (so RocksDB holds merge operands) restore at
/// parallelism 1, 2 and 3, into either backend, with every element once and in order.
#[test]
fn appended_lists_restore_at_any_parallelism_and_across_backends() {
    let tmp = tempfile::tempdir().unwrap();
    let keys: Vec<u8> = (0..30).collect();
    let expected = |k: u8| -> Vec<u32> { (0..u32::from(k % 5) * 7 + 3).map(|i| i * 100 + u32::from(k)).collect() };
    for from in kinds() {
        let mut written = Vec::new();
        for sub in 0..2 {
            let range = KeyGroupRange::for_subtask(128, 2, sub);
            let mut b: KeyedStateBackend<u8> = KeyedStateBackend::new(kind(from, tmp.path()), 128, range).unwrap();
            let h = b.list_state::<u32, u8>("l", None).unwrap();
            for round in 0..3 {
                for &k in keys.iter().filter(|k| range.contains(kg(**k))) {
                    let all = expected(k);
                    let n = all.len().div_ceil(3);
                    for v in all.iter().skip(round * n).take(n) {
                        b.list_add(&h, kg(k), &k, &4, *v).unwrap();
                    }
                }
                b.snapshot(&mut StateSnapshot::default()).unwrap(); // writes the caches out
            }
            let mut s = StateSnapshot::default();
            b.snapshot(&mut s).unwrap();
            written.push(s);
        }
        let snapshots = common::checkpoint(&tmp.path().join(format!("chk-{from}")), "lists", &written);
        for to in kinds() {
            for p in [1, 2, 3] {
                let mut restored = 0;
                for sub in 0..p {
                    let range = KeyGroupRange::for_subtask(128, p, sub);
                    let part = StateSnapshot::for_subtask(&snapshots, range, sub, p);
                    let mut b: KeyedStateBackend<u8> =
                        KeyedStateBackend::new(kind(to, tmp.path()), 128, range).unwrap();
                    b.restore(&part).unwrap();
                    let h = b.list_state::<u32, u8>("l", None).unwrap();
                    for &k in keys.iter().filter(|k| range.contains(kg(**k))) {
                        assert_eq!(
                            b.list_get(&h, kg(k), &k, &4).unwrap(),
                            expected(k),
                            "{from}->{to} p{p} key {k}"
                        );
                        restored += 1;
                    }
                }
                assert_eq!(restored, keys.len());
            }
        }
    }
}
