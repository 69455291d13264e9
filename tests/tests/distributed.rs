//! One job run by several workers (threads of this test, each with its own listener and
//! its own copy of the job, as task managers run them in processes): records, watermarks,
//! barriers and the end of the stream cross real TCP connections between them, worker 0
//! coordinates the checkpoints of all, and the results equal a run in one process.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_runtime::{AttemptSecret, Placement};

const N: u64 = 60_000;
const KEYS: u64 = 101;

/// Per key, a running count: the last value seen per key is the key's total.
fn build(env: &Env) -> CollectHandle<(u64, u64)> {
    env.generate(N, |i| (i * 7 % KEYS, 1u64))
        .key_by(|v| v.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .collect()
}

fn totals(outputs: impl IntoIterator<Item = (u64, u64)>) -> BTreeMap<u64, u64> {
    let mut t = BTreeMap::new();
    for (k, n) in outputs {
        let e = t.entry(k).or_insert(0);
        *e = n.max(*e);
    }
    t
}

/// Runs the job over `workers` workers placing subtask `i` on worker `placement[i]`.
fn run_spread(placement: Vec<usize>, workers: usize, chk: &std::path::Path) -> (Vec<(u64, u64)>, u64) {
    let listeners: Vec<TcpListener> = (0..workers)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(w, listener)| {
            let placement = Arc::new(Placement::new(
                7,
                w,
                placement.clone(),
                listener,
                peers.clone(),
                AttemptSecret::from_bytes([5; 32]),
            ));
            let chk = chk.to_path_buf();
            let parallelism = placement.subtask_worker.len();
            std::thread::spawn(move || {
                let env = Env::with_config(JobConfig {
                    parallelism,
                    checkpoint_dir: Some(chk),
                    checkpoint_interval_ms: 20,
                    ..JobConfig::default()
                });
                let out = build(&env);
                let result = env.execute_placed("spread", placement).unwrap().join().unwrap();
                (out.take(), result.last_checkpoint.unwrap_or(0))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut last = 0;
    for t in threads {
        let (out, l) = t.join().unwrap();
        all.extend(out);
        last = last.max(l);
    }
    (all, last)
}

#[test]
fn a_keyed_job_over_two_workers_equals_one_process() {
    let local = {
        let env = Env::local(2);
        let out = build(&env);
        env.execute("local").unwrap();
        totals(out.take())
    };
    assert_eq!(local.values().sum::<u64>(), N);
    let dir = tempfile::tempdir().unwrap();
    let (out, last) = run_spread(vec![0, 1], 2, &dir.path().join("chk"));
    assert_eq!(totals(out.iter().copied()), local, "totals per key");
    // Every update of every key arrives once: the sum of updates equals N's triangle.
    assert_eq!(out.len() as u64, N, "one output per input record");
    assert!(last >= 1, "worker 0 completed checkpoints (with every worker's state)");
}

#[test]
fn three_subtasks_over_two_workers_with_an_uneven_placement() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_spread(vec![0, 1, 1], 2, &dir.path().join("chk"));
    let t = totals(out.iter().copied());
    assert_eq!(t.len() as u64, KEYS);
    assert_eq!(t.values().sum::<u64>(), N);
    assert_eq!(out.len() as u64, N);
}

#[test]
fn a_bad_placement_is_refused_with_a_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let placement = Arc::new(Placement::new(
        1,
        0,
        vec![0],
        listener,
        vec![addr],
        AttemptSecret::from_bytes([5; 32]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let env = Env::with_config(JobConfig {
        parallelism: 2,
        checkpoint_dir: Some(dir.path().to_path_buf()),
        ..JobConfig::default()
    });
    let _ = build(&env);
    let err = env.execute_placed("bad", placement).err().unwrap().to_string();
    assert!(err.contains("placement covers 1 subtasks"), "{err}");
}
