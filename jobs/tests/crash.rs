//! Kill -9, savepoints and corrupt checkpoints: a job that is killed, stopped, rescaled or
//! restored past damaged checkpoints commits exactly what an uninterrupted run commits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn job(out: &Path, chk: &Path, rate: &str) -> Command {
    job_at(out, chk, rate, 2)
}

fn job_at(out: &Path, chk: &Path, rate: &str, parallelism: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_counts-per-key"));
    c.args(["--events", "1000000", "--rate", rate, "--checkpoint-interval-ms", "100"])
        .arg("--parallelism")
        .arg(parallelism.to_string())
        .arg("--output")
        .arg(out)
        .arg("--checkpoint-dir")
        .arg(chk)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    c
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Row {
    key: u64,
    window_start: i64,
    count: u64,
}

/// The rows of a committed Parquet part file, as the JSON lines the other format writes.
fn parquet_rows(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not a complete Parquet file: {e}", path.display()))
        .build()
        .unwrap();
    let mut lines = Vec::new();
    for batch in reader {
        let rows: Vec<Row> = serde_arrow::from_record_batch(&batch.unwrap()).unwrap();
        lines.extend(rows.iter().map(|r| serde_json::to_string(r).unwrap()));
    }
    lines
}

/// Every committed line (Parquet rows as JSON lines), sorted; and the names of files not
/// committed.
fn committed(dir: &Path) -> (Vec<String>, Vec<String>) {
    let (mut lines, mut other) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(String::from));
        } else if name.starts_with("part-") && name.ends_with(".parquet") {
            lines.extend(parquet_rows(&e.path()));
        } else {
            other.push(name);
        }
    }
    lines.sort();
    (lines, other)
}

/// The committed output of an uninterrupted run.
fn reference(dir: &Path) -> Vec<String> {
    let (out, chk) = (dir.join("reference"), dir.join("chk-reference"));
    let status = job(&out, &chk, "10000000").status().unwrap();
    assert!(status.success());
    let (expected, leftovers) = committed(&out);
    assert!(expected.len() > 50_000, "{} results", expected.len());
    assert!(leftovers.is_empty(), "{leftovers:?}");
    expected
}

/// The newest complete checkpoint in `chk` (0 if none).
fn newest_checkpoint(chk: &Path) -> u64 {
    complete_checkpoints(chk)
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn complete_checkpoints(chk: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(chk)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("_manifest.json").exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits (with a deadline) until the job has completed `n` checkpoints.
fn wait_for_checkpoints(chk: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while newest_checkpoint(chk) < n {
        assert!(Instant::now() < deadline, "no checkpoint {n} after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the job `kills` times at random moments of a run that would take 10 s
/// (checkpoints every 100 ms, so some kills land in one), restarts it each time, lets the
/// last run finish, and checks the committed output against the uninterrupted run.
fn kill_restart_and_compare(kills: usize, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let expected = reference(dir.path());

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut progress = Vec::new();
    for kill in 1..=kills {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(200 + (seed >> 33) % 500);
        let mut child = job(&out, &chk, "100000").args(extra).spawn().unwrap();
        let started = Instant::now();
        // The random moment of the kill: time is the point here, not a synchronization.
        while started.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the job ended before kill {kill} ({status})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        progress.push(newest_checkpoint(&chk));
    }
    println!("newest checkpoint after each kill: {progress:?}");
    assert!(
        progress.windows(2).any(|w| w[1] > w[0]),
        "never got past a checkpoint: {progress:?}"
    );
    let status = job(&out, &chk, "10000000").args(extra).status().unwrap();
    assert!(status.success());
    let (got, leftovers) = committed(&out);
    assert!(leftovers.is_empty(), "uncommitted files left behind: {leftovers:?}");
    assert_eq!(got.len(), expected.len(), "nothing lost, nothing duplicated");
    assert!(got == expected, "committed output differs from the uninterrupted run");
}

#[test]
fn sigkill_and_restore_commit_each_result_exactly_once() {
    kill_restart_and_compare(10, &[]);
}

/// The same with Parquet part files and the heap state backend: every committed file is a
/// complete Parquet file, and its rows are exactly the uninterrupted run's (JSON lines).
#[test]
fn sigkill_with_parquet_output_and_heap_state() {
    kill_restart_and_compare(4, &["--format", "parquet", "--state-backend", "memory"]);
}

#[test]
fn stop_with_savepoint_and_resume_at_another_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference(dir.path());
    let (out, chk, savepoint) = (
        dir.path().join("out"),
        dir.path().join("chk"),
        dir.path().join("savepoint"),
    );
    let mut child = job(&out, &chk, "100000")
        .arg("--savepoint-dir")
        .arg(&savepoint)
        .spawn()
        .unwrap();
    wait_for_checkpoints(&chk, 3);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "stop with savepoint ends the job normally: {status}");
    let (partial, _) = committed(&out);
    assert!(
        !partial.is_empty() && partial.len() < expected.len(),
        "stopped midway: {} results",
        partial.len()
    );
    for p in [1, 3] {
        let (out_p, chk_p) = (dir.path().join(format!("out-{p}")), dir.path().join(format!("chk-{p}")));
        std::fs::create_dir_all(&out_p).unwrap();
        for f in std::fs::read_dir(&out).unwrap().flatten() {
            std::fs::copy(f.path(), out_p.join(f.file_name())).unwrap();
        }
        let status = job_at(&out_p, &chk_p, "10000000", p)
            .arg("--from-savepoint")
            .arg(&savepoint)
            .status()
            .unwrap();
        assert!(status.success());
        let (got, leftovers) = committed(&out_p);
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(got.len(), expected.len(), "resumed at parallelism {p}");
        assert!(got == expected, "resumed at parallelism {p}: output differs");
    }
}

#[test]
fn corrupt_newest_checkpoints_fall_back_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference(dir.path());
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut child = job(&out, &chk, "100000").spawn().unwrap();
    wait_for_checkpoints(&chk, 5);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut complete = complete_checkpoints(&chk);
    assert!(complete.len() >= 3, "{complete:?}");
    // The newest loses its manifest; in the one before, a state file is cut in half.
    let newest = complete.pop().unwrap();
    std::fs::remove_file(newest.join("_manifest.json")).unwrap();
    let second = complete.pop().unwrap();
    let state = std::fs::read_dir(&second)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .unwrap();
    let len = std::fs::metadata(state.path()).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(state.path())
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let run = job(&out, &chk, "10000000").stderr(Stdio::piped()).output().unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("skipping checkpoint") && stderr.contains("corrupt"),
        "{stderr}"
    );
    let (got, leftovers) = committed(&out);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(got.len(), expected.len(), "nothing lost, nothing duplicated");
    assert!(got == expected, "output differs after falling back");
}
