//! Kill -9 and restore: a job killed at random moments and restarted from its checkpoint
//! directory commits exactly what an uninterrupted run commits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn job(out: &Path, chk: &Path, rate: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_counts-per-key"));
    c.args([
        "--parallelism",
        "2",
        "--events",
        "1000000",
        "--rate",
        rate,
        "--checkpoint-interval-ms",
        "100",
    ])
    .arg("--output")
    .arg(out)
    .arg("--checkpoint-dir")
    .arg(chk)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null());
    c
}

/// Every committed line, sorted; and the names of files not committed.
fn committed(dir: &Path) -> (Vec<String>, Vec<String>) {
    let (mut lines, mut other) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(String::from));
        } else {
            other.push(name);
        }
    }
    lines.sort();
    (lines, other)
}

#[test]
fn sigkill_and_restore_commit_each_result_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, out, chk) = (
        dir.path().join("reference"),
        dir.path().join("out"),
        dir.path().join("chk"),
    );

    let status = job(&reference, &dir.path().join("chk-reference"), "10000000")
        .status()
        .unwrap();
    assert!(status.success());
    let (expected, leftovers) = committed(&reference);
    assert!(expected.len() > 50_000, "{} results", expected.len());
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Ten kills at random moments of a run that would take 10 s; checkpoints every 100 ms,
    // so some kills land in one.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut restored_progress = Vec::new();
    for _ in 0..10 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(200 + (seed >> 33) % 500);
        let mut child = job(&out, &chk, "100000").spawn().unwrap();
        let started = Instant::now();
        // The random moment of the kill: time is the point here, not a synchronization.
        while started.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the job ended before it was killed ({status}): kill {} of 10", restored_progress.len() + 1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        restored_progress.push(newest_checkpoint(&chk));
    }
    println!("newest checkpoint after each kill: {restored_progress:?}");
    assert!(
        restored_progress.windows(2).any(|w| w[1] > w[0]),
        "the job never got past a checkpoint between kills: {restored_progress:?}"
    );
    let status = job(&out, &chk, "10000000").status().unwrap();
    assert!(status.success());
    let (got, leftovers) = committed(&out);
    assert!(leftovers.is_empty(), "uncommitted files left behind: {leftovers:?}");
    assert_eq!(got.len(), expected.len(), "nothing lost, nothing duplicated");
    assert!(got == expected, "committed output differs from the uninterrupted run");
}

fn newest_checkpoint(chk: &Path) -> u64 {
    std::fs::read_dir(chk)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_manifest.json").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
