//! A job whose every retained checkpoint is damaged fails with an error naming its
//! checkpoint directory and what is wrong with each checkpoint, whatever the damage (a bit
//! flipped in a state file, a bit flipped in a shared RocksDB file of the same size, a
//! truncated manifest); `--allow-fresh-start` starts it from scratch instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod counts_job;
use counts_job::{job, wait_for_checkpoints};
use floe_testkit::crash::complete_checkpoints;

/// Flips one bit in the middle of `path`, keeping its size.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x08;
    let len = bytes.len();
    std::fs::write(path, bytes).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), len as u64);
}

fn id_of(checkpoint: &Path) -> u64 {
    let name = checkpoint.file_name().unwrap().to_string_lossy();
    name.strip_prefix("chk-").unwrap().parse().unwrap()
}

/// The checkpoint directory of a job killed (SIGKILL) after its fifth checkpoint, and its
/// complete checkpoints.
fn killed_after_checkpoints(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let chk = dir.join("chk");
    let mut child = job(&dir.join("out"), &chk, "100000").spawn().unwrap();
    wait_for_checkpoints(&chk, 5);
    child.kill().unwrap();
    child.wait().unwrap();
    let retained = complete_checkpoints(&chk);
    assert!(retained.len() >= 2, "{retained:?}");
    (chk, retained)
}

/// Runs the job again over `chk` with `extra` flags, capturing what it prints.
fn rerun(dir: &Path, chk: &Path, extra: &[&str]) -> (Output, String, String) {
    let out = job(&dir.join("out-again"), chk, "10000000")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Damages every retained checkpoint with `damage`, then checks that the job refuses to
/// start (naming the directory and, for each checkpoint, `what` is wrong), and that
/// `--allow-fresh-start` starts it from scratch with a warning.
fn refused_then_started_afresh(damage: impl Fn(&Path, &[PathBuf]), what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (chk, retained) = killed_after_checkpoints(dir.path());
    damage(&chk, &retained);

    let (run, stdout, stderr) = rerun(dir.path(), &chk, &[]);
    assert!(
        !run.status.success(),
        "started over damaged checkpoints: {stdout}{stderr}"
    );
    let message = format!("checkpoints were taken in {}, but none can be restored", chk.display());
    assert!(stderr.contains(&message), "{stderr}");
    for c in &retained {
        let id = id_of(c);
        let problem = stderr
            .split(&format!("checkpoint {id}: "))
            .nth(1)
            .unwrap_or_else(|| panic!("checkpoint {id} is not reported: {stderr}"));
        assert!(
            problem.split("; ").next().unwrap_or_default().contains(what),
            "checkpoint {id}: {problem}"
        );
    }
    assert!(stderr.contains("--allow-fresh-start"), "{stderr}");
    assert!(!dir.path().join("out-again").exists() || committed_nothing(&dir.path().join("out-again")));

    let (run, stdout, stderr) = rerun(dir.path(), &chk, &["--allow-fresh-start"]);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("STARTING FROM SCRATCH"), "{stderr}");
    assert!(stdout.contains("restored from checkpoint None"), "{stdout}");
}

fn committed_nothing(out: &Path) -> bool {
    std::fs::read_dir(out).unwrap().flatten().next().is_none()
}

#[test]
fn every_checkpoint_with_a_flipped_bit_in_a_state_file_is_refused() {
    refused_then_started_afresh(
        |_, retained| {
            for c in retained {
                let state = std::fs::read_dir(c)
                    .unwrap()
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().ends_with(".state"))
                    .unwrap();
                flip_a_bit(&state.path());
            }
        },
        "is corrupt: checksum",
    );
}

/// The shared files a checkpoint's manifest references.
fn shared_files(checkpoint: &Path) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("_manifest.json")).unwrap()).unwrap();
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["shared"].as_array().cloned().unwrap_or_default())
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_checkpoint_with_a_flipped_bit_in_a_shared_sst_is_refused() {
    refused_then_started_afresh(
        |chk, retained| {
            // One file per checkpoint, each flipped once (checkpoints share files).
            let mut flipped = BTreeSet::new();
            for c in retained {
                let files = shared_files(c);
                assert!(!files.is_empty(), "{} references no shared file", c.display());
                if !files.iter().any(|f| flipped.contains(f)) {
                    flipped.insert(files[0].clone());
                }
            }
            for f in &flipped {
                flip_a_bit(&chk.join("shared").join(f));
            }
        },
        ".sst is corrupt: checksum",
    );
}

#[test]
fn every_checkpoint_with_a_truncated_manifest_is_refused() {
    refused_then_started_afresh(
        |_, retained| {
            for c in retained {
                let manifest = c.join("_manifest.json");
                let len = std::fs::metadata(&manifest).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&manifest)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }
        },
        "manifest is invalid",
    );
}
