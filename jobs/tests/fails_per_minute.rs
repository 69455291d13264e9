//! The shipped job as a user runs it: a real process, real files.

use std::collections::BTreeMap;
use std::process::Command;

use floe_jobs::payments::{Payment, Status};

fn job() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fails-per-minute"))
}

#[derive(serde::Deserialize)]
struct Row {
    user_id: u32,
    window_start: i64,
    window_end: i64,
    fails: u64,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn counts_match_an_oracle_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let status = job()
        .args(["--parallelism", "2", "--generate", "120000", "--input"])
        .arg(path("payments.jsonl"))
        .arg("--output")
        .arg(path("out.jsonl"))
        .arg("--late-output")
        .arg(path("late.jsonl"))
        .arg("--bad-output")
        .arg(path("bad.jsonl"))
        .status()
        .unwrap();
    assert!(status.success());

    // Oracle: every valid FAIL payment except those written as late, per user and minute.
    let late: Vec<Payment> = read_lines(&path("late.jsonl"));
    let text = std::fs::read_to_string(path("payments.jsonl")).unwrap();
    // The generator writes every 50,000th payment two minutes late: the failed ones among
    // them must be exactly the late output.
    let written_late: Vec<Payment> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Payment>(l).ok())
        .filter(|p| p.event_id % 50_000 == 49_999 && p.status == Status::Fail)
        .collect();
    assert_eq!(late, written_late);
    let mut expected: BTreeMap<(u32, i64), u64> = BTreeMap::new();
    let mut malformed = 0;
    for line in text.lines() {
        let Ok(p) = serde_json::from_str::<Payment>(line) else {
            malformed += 1;
            continue;
        };
        if p.status == Status::Fail && !late.contains(&p) {
            *expected.entry((p.user_id, p.ts - p.ts.rem_euclid(60_000))).or_default() += 1;
        }
    }
    assert_eq!(malformed, 2);
    let bad: Vec<serde_json::Value> = read_lines(&path("bad.jsonl"));
    assert_eq!(bad.len(), 2, "both malformed lines are in the bad-records file");
    assert!(bad
        .iter()
        .all(|b| b["line"].as_u64().unwrap() > 50_000 && b["error"].as_str().is_some()));

    let mut got: BTreeMap<(u32, i64), u64> = BTreeMap::new();
    for r in read_lines::<Row>(&path("out.jsonl")) {
        assert_eq!(r.window_end - r.window_start, 60_000);
        // A window may fire again for a record within the allowed lateness: the last wins.
        got.insert((r.user_id, r.window_start), r.fails);
    }
    assert_eq!(got, expected);
}

#[test]
fn bad_arguments_fail_fast_with_a_message() {
    let out = job().args(["--parallelism", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--parallelism must be at least 1"), "{err}");

    let out = job().args(["--paralelism", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--parallelism"), "clap suggests the right flag: {err}");
}
