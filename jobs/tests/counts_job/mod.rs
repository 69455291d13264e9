//! Runs of the `counts-per-key` job (events per key per 10 s, written exactly once) and
//! what they leave: committed output and checkpoint directories.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Stdio};

use floe_testkit::crash::newest_checkpoint;
use floe_testkit::{wait_until, DEADLINE};

/// The job at parallelism 2: a million events at `rate` per second, checkpoints every
/// 100 ms into `chk`, output committed into `out`.
pub fn job(out: &Path, chk: &Path, rate: &str) -> Command {
    job_at(out, chk, rate, 2)
}

/// The same at another parallelism.
pub fn job_at(out: &Path, chk: &Path, rate: &str, parallelism: usize) -> Command {
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
/// A committed row.
pub struct Row {
    key: u64,
    window_start: i64,
    count: u64,
}

/// The rows of a committed Parquet part file, as the JSON lines the other format writes.
pub fn parquet_rows(path: &Path) -> Vec<String> {
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
pub fn committed(dir: &Path) -> (Vec<String>, Vec<String>) {
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
pub fn reference(dir: &Path) -> Vec<String> {
    let (out, chk) = (dir.join("reference"), dir.join("chk-reference"));
    let status = job(&out, &chk, "10000000").status().unwrap();
    assert!(status.success());
    let (expected, leftovers) = committed(&out);
    assert!(expected.len() > 50_000, "{} results", expected.len());
    assert!(leftovers.is_empty(), "{leftovers:?}");
    expected
}

/// Waits (with a deadline) until the job has completed `n` checkpoints.
pub fn wait_for_checkpoints(chk: &Path, n: u64) {
    wait_until(&format!("checkpoint {n}"), DEADLINE, || newest_checkpoint(chk) >= n);
}
