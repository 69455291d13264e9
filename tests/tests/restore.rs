//! Restores through the DSL that must not happen silently: a checkpoint or savepoint of
//! another job is refused saying what differs; state follows operators by their uid when
//! the job changes; checkpoints that exist but cannot be restored fail the job unless a
//! fresh start is allowed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use floe_dsl::prelude::*;
use floe_dsl::JobConfig;

/// Options of a run at parallelism 2 that checkpoints into `chk` (only the final one, at
/// the end of its bounded input) and, if given, restores from `from`.
fn config(chk: &Path, from: Option<&Path>) -> JobConfig {
    JobConfig {
        parallelism: 2,
        checkpoint_dir: Some(chk.to_path_buf()),
        checkpoint_interval_ms: 0,
        from_savepoint: from.map(Path::to_path_buf),
        ..JobConfig::default()
    }
}

/// Sums per key of `input`: (key, running sum) as the rolling reduce emits them, reduced to
/// the last sum of each key.
fn sums(env: &Env, input: Vec<(u32, u64)>, source_uid: &str, extra_filter: bool) -> CollectHandle<(u32, u64)> {
    let mut stream = env.from_collection(input).uid(source_uid);
    if extra_filter {
        stream = stream.filter(|_| true);
    }
    stream
        .key_by(|e| e.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .uid("sums")
        .collect()
}

fn last_per_key(out: Vec<(u32, u64)>) -> BTreeMap<u32, u64> {
    let mut last = BTreeMap::new();
    for (k, v) in out {
        let e = last.entry(k).or_insert(0);
        *e = (*e).max(v);
    }
    last
}

/// Runs job `counts` once over a small input into `dir/a`, leaving its final checkpoint.
fn first_run(dir: &Path) -> PathBuf {
    let chk = dir.join("a");
    let env = Env::with_config(config(&chk, None));
    let out = sums(&env, vec![(1, 10), (2, 20), (1, 5)], "in-a", false);
    env.execute("counts").unwrap();
    assert_eq!(last_per_key(out.take()), BTreeMap::from([(1, 15), (2, 20)]));
    chk
}

#[test]
fn a_savepoint_of_another_job_is_refused_saying_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_run(dir.path());
    let env = Env::with_config(config(&dir.path().join("b"), Some(&savepoint)));
    let out = sums(&env, vec![(1, 1)], "in-a", false);
    let err = env.execute("other-job").unwrap_err().to_string();
    assert!(
        err.contains(&*savepoint.to_string_lossy()) && err.contains("taken by job `counts`, this job is `other-job`"),
        "{err}"
    );
    assert!(out.take().is_empty(), "nothing ran");
}

#[test]
fn state_follows_operator_uids_when_the_job_changes() {
    let dir = tempfile::tempdir().unwrap();
    let savepoint = first_run(dir.path());
    // A filter before the reduce moves it in the graph, and the source is another one: the
    // old source's state (its position) has no operator to go to.
    let env = Env::with_config(config(&dir.path().join("b"), Some(&savepoint)));
    sums(&env, vec![(1, 1), (2, 1)], "in-b", true);
    let err = env.execute("counts").unwrap_err().to_string();
    assert!(
        err.contains("holds state of operators this job does not have: `collection` (uid in-a)")
            && err.contains("`collection` (uid in-b)")
            && err.contains("--allow-non-restored-state"),
        "{err}"
    );
    // Allowed to drop it: the reduce finds its sums by its uid and goes on from them.
    let env = Env::with_config(JobConfig {
        allow_non_restored_state: true,
        ..config(&dir.path().join("c"), Some(&savepoint))
    });
    let out = sums(&env, vec![(1, 1), (2, 1)], "in-b", true);
    let result = env.execute("counts").unwrap();
    assert!(result.restored_from.is_some());
    assert_eq!(last_per_key(out.take()), BTreeMap::from([(1, 16), (2, 21)]));
}

#[test]
fn unrestorable_checkpoints_fail_the_job_unless_a_fresh_start_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let chk = first_run(dir.path());
    let state = std::fs::read_dir(&chk)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().flatten())
        .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&state).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&state, bytes).unwrap();

    let env = Env::with_config(config(&chk, None));
    sums(&env, vec![(1, 1)], "in-a", false);
    let err = env.execute("counts").unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "checkpoints were taken in {}, but none can be restored",
            chk.display()
        )) && err.contains("is corrupt: checksum")
            && err.contains("--allow-fresh-start"),
        "{err}"
    );
    let env = Env::with_config(JobConfig {
        allow_fresh_start: true,
        ..config(&chk, None)
    });
    let out = sums(&env, vec![(1, 1)], "in-a", false);
    let result = env.execute("counts").unwrap();
    assert_eq!(result.restored_from, None, "started from scratch");
    assert_eq!(last_per_key(out.take()), BTreeMap::from([(1, 1)]));
    // Its own final checkpoint now restores.
    let env = Env::with_config(config(&chk, None));
    let out = sums(&env, vec![(1, 1)], "in-a", false);
    assert!(env.execute("counts").unwrap().restored_from.is_some());
    assert!(out.take().is_empty(), "the restored source had read its input already");
}
