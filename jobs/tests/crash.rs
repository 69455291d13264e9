//! Kill -9, savepoints and corrupt checkpoints: a job that is killed, stopped, rescaled or
//! restored past damaged checkpoints commits exactly what an uninterrupted run commits.

use std::process::{Command, Stdio};

use floe_testkit::crash::{complete_checkpoints, kill_at, newest_checkpoint, KillMoment, TestRng};

mod counts_job;
use counts_job::{committed, job, job_at, reference, wait_for_checkpoints};

/// Kills the job `kills` times in a run that would take 20 s (checkpoints every 100 ms),
/// restarts it each time, lets the last run finish, and checks the committed output
/// against the uninterrupted run. Every other kill lands at a random moment up to 300 ms
/// after the run completed a checkpoint of its own (between checkpoints, in a snapshot, in
/// a commit), the others at a random moment after the start (start-up and restore
/// included), so the runs get past their checkpoints however loaded the machine is.
fn kill_restart_and_compare(kills: usize, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let expected = reference(dir.path());

    let mut rng = TestRng::from_env_or_time();
    let mut progress = Vec::new();
    for kill in 1..=kills {
        let moment = KillMoment::alternating(kill, &chk, &mut rng, 0..=300, 200..=700);
        let child = job(&out, &chk, "50000").args(extra).spawn().unwrap();
        assert!(kill_at(child, moment), "the job ended before kill {kill}");
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

/// The id of a checkpoint directory `chk-0000000007`.
fn id_of(checkpoint: &std::path::Path) -> u64 {
    let name = checkpoint.file_name().unwrap().to_string_lossy();
    name.strip_prefix("chk-").unwrap().parse().unwrap()
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
    // Two complete checkpoints are damaged: the newest's manifest is cut in half, and in
    // the one before a bit of a state file flips (same size).
    let newest = complete.pop().unwrap();
    let manifest = newest.join("_manifest.json");
    let len = std::fs::metadata(&manifest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&manifest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let second = complete.pop().unwrap();
    let state = std::fs::read_dir(&second)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&state).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&state, bytes).unwrap();
    let third = id_of(complete.last().unwrap());

    let run = job(&out, &chk, "10000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{stderr}");
    for (skipped, why) in [
        (id_of(&newest), "manifest is invalid"),
        (id_of(&second), "is corrupt: checksum"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("skipping checkpoint {skipped}, which cannot be restored")))
            .unwrap_or_else(|| panic!("checkpoint {skipped} not reported skipped: {stderr}"));
        assert!(line.contains(why), "{line}");
    }
    assert!(
        stdout.contains(&format!("restored from checkpoint Some({third})")),
        "{stdout}"
    );
    let (got, leftovers) = committed(&out);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(got.len(), expected.len(), "nothing lost, nothing duplicated");
    assert!(got == expected, "output differs after falling back");
}
