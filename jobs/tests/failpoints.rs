//! A SIGKILL at every phase of a checkpoint and of output, exactly there: for each failpoint
//! of `floe_failpoints::FAILPOINTS`, a real job process (Kafka in and out through the test
//! broker, or the exactly-once file sink) runs with `FLOE_FAILPOINTS=<failpoint>=kill@N`
//! while its input is written, and must die of SIGKILL at that failpoint (saying so on
//! stderr) after some checkpoints completed. A restart without failpoints, bounded to the
//! input, must restore the newest complete checkpoint on disk and leave each input counted
//! exactly once and each malformed input in the dead-letter topic exactly once.
//!
//! Needs job binaries built with failpoints: `cargo test --workspace --all-features --test
//! failpoints` (this test has `required-features = ["failpoints"]`).

mod common;
mod counts_job;
mod kill_runs;

use std::path::Path;
use std::time::Duration;

use kill_runs::{
    assert_counts_exact, assert_fraud_exact, assert_restored_newest, broker, counts_job, expect_killed_at, fraud_job,
    newest_complete, write_counts_input, RunLog, Running,
};

/// How long a run may take to reach its failpoint.
const TO_FAILPOINT: Duration = Duration::from_secs(90);
/// `kafka-counts` input: events and their rate (a couple of seconds of input, so that the
/// failpoint is reached while it flows).
const EVENTS: u64 = 6_000;
const RATE: u64 = 2_500;

/// What happens before the run with the failpoint.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    /// A run without failpoints, killed from outside once it completed this many
    /// checkpoints: the run with the failpoint then restores.
    KilledAfterCheckpoints(usize),
    /// A run held (a `pause` failpoint) just before its first Kafka commit to `counts`,
    /// then killed from outside: the newest complete checkpoint then holds an epoch of
    /// records not yet committed (no later one can complete while a sink is held), which
    /// the run with the failpoint must recover.
    KilledBeforeACommit,
}

/// Runs with failpoint `target` (`name` or `name[qualifier]`) set to `kill@at`, then the
/// bounded last run; checks each run's restore. Returns the killed run's log.
fn kill_at_then_finish(
    dir: &Path,
    command: impl Fn(bool) -> std::process::Command,
    target: &str,
    at: u64,
    before: Before,
    input_done: impl FnOnce(),
) -> RunLog {
    let chk = dir.join("chk");
    let completed = |log: &str| log.matches("checkpoint complete").count();
    match before {
        Before::Nothing => {}
        Before::KilledAfterCheckpoints(n) => {
            let mut run = Running::start(command(false), &dir.join("run-before.log"), "");
            run.wait_for_log(TO_FAILPOINT, &format!("{n} checkpoints"), |log| completed(log) >= n);
            run.kill();
        }
        Before::KilledBeforeACommit => {
            let hold = "kafka.before-commit[counts]";
            let mut run = Running::start(command(false), &dir.join("run-before.log"), &format!("{hold}=pause"));
            run.wait_for_log(TO_FAILPOINT, hold, |log| {
                log.contains(&format!("floe failpoint {hold}: pause"))
            });
            run.kill();
        }
    }
    let on_disk = newest_complete(&chk);
    let run = Running::start(
        command(false),
        &dir.join("run-killed.log"),
        &format!("{target}=kill@{at}"),
    );
    let killed = expect_killed_at(run, target, TO_FAILPOINT);
    let during_restore = target.starts_with("restore.");
    assert_restored_newest(&killed, on_disk, !during_restore);
    if !during_restore {
        assert!(
            !killed.completed().is_empty(),
            "no checkpoint completed before the kill at {target}: choose a later hit\n{}",
            killed.tail()
        );
    }
    input_done();
    assert!(newest_complete(&chk).is_some(), "no complete checkpoint to restore");
    let last = kill_runs::run_last(command(true), dir, &chk, Duration::from_secs(180));
    println!(
        "{target}=kill@{at}: the killed run restored {:?} and completed {:?}; the last run restored {:?}",
        killed.restored(),
        killed.completed(),
        last.restored()
    );
    killed
}

/// `kafka-counts` killed at `target`'s `at`-th hit.
fn counts_case(target: &str, at: u64, before: Before) {
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let brokers = broker.brokers();
    let input = std::thread::spawn(move || write_counts_input(brokers, EVENTS, RATE));
    let mut bad = None;
    let chk = dir.path().join("chk");
    kill_at_then_finish(
        dir.path(),
        |bounded| counts_job(&broker, &chk, bounded),
        target,
        at,
        before,
        || bad = Some(input.join().unwrap()),
    );
    assert_counts_exact(&broker, EVENTS, &bad.unwrap_or_default());
}

/// The fraud job killed at `target`'s `at`-th hit.
fn fraud_case(target: &str, at: u64) {
    const PAYMENTS: u64 = 12_000;
    const MALFORMED_EVERY: u64 = 250;
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let profile = common::attack_profile(31);
    let writer = common::write_payments(&broker, &profile, PAYMENTS, 4_000, MALFORMED_EVERY);
    let chk = dir.path().join("chk");
    kill_at_then_finish(
        dir.path(),
        |bounded| fraud_job(&broker, &chk, bounded),
        target,
        at,
        Before::Nothing,
        || writer.join().unwrap().unwrap(),
    );
    assert_fraud_exact(&broker, &profile, PAYMENTS, MALFORMED_EVERY);
}

/// `counts-per-key` (exactly-once part files) killed at `target`'s `at`-th hit; its
/// committed output must be an uninterrupted run's.
fn file_case(target: &str, at: u64) {
    let dir = tempfile::tempdir().unwrap();
    let expected = counts_job::reference(dir.path());
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    kill_at_then_finish(
        dir.path(),
        |bounded| counts_job::job(&out, &chk, if bounded { "10000000" } else { "100000" }),
        target,
        at,
        Before::Nothing,
        || {},
    );
    let (got, leftovers) = counts_job::committed(&out);
    assert!(leftovers.is_empty(), "uncommitted files left behind: {leftovers:?}");
    assert_eq!(got.len(), expected.len(), "nothing lost, nothing duplicated");
    assert!(got == expected, "committed output differs from the uninterrupted run");
}

/// One test per failpoint case, and the list of what they cover.
macro_rules! cases {
    ($($test:ident: $target:literal => $run:expr;)*) => {
        $(
            #[test]
            fn $test() {
                $run
            }
        )*
        /// The failpoint each test kills at.
        const COVERED: &[&str] = &[$($target),*];
    };
}

cases! {
    at_trigger: "checkpoint.trigger" => counts_case("checkpoint.trigger", 3, Before::Nothing);
    at_barrier_received: "checkpoint.barrier-received" => counts_case("checkpoint.barrier-received", 25, Before::Nothing);
    before_sync_snapshot: "checkpoint.before-snapshot" => counts_case("checkpoint.before-snapshot", 15, Before::Nothing);
    after_sync_snapshot: "checkpoint.after-snapshot" => counts_case("checkpoint.after-snapshot", 15, Before::Nothing);
    at_ack_received: "checkpoint.ack-received" => counts_case("checkpoint.ack-received", 15, Before::Nothing);
    during_upload_of_shared_files: "checkpoint.upload-shared" => counts_case("checkpoint.upload-shared", 4, Before::Nothing);
    after_a_state_file_is_written: "checkpoint.state-written" => counts_case("checkpoint.state-written", 20, Before::Nothing);
    before_the_manifest: "checkpoint.before-manifest" => counts_case("checkpoint.before-manifest", 3, Before::Nothing);
    after_the_manifest: "checkpoint.after-manifest" => counts_case("checkpoint.after-manifest", 3, Before::Nothing);
    before_notify_complete: "checkpoint.before-notify" => counts_case("checkpoint.before-notify", 3, Before::Nothing);
    after_notify_complete: "checkpoint.after-notify" => counts_case("checkpoint.after-notify", 3, Before::Nothing);
    before_a_task_is_notified: "task.before-notify" => counts_case("task.before-notify", 15, Before::Nothing);
    after_a_task_is_notified: "task.after-notify" => counts_case("task.after-notify", 15, Before::Nothing);
    before_the_kafka_commit: "kafka.before-commit[counts]" => counts_case("kafka.before-commit[counts]", 3, Before::Nothing);
    after_the_kafka_commit: "kafka.after-commit[counts]" => counts_case("kafka.after-commit[counts]", 3, Before::Nothing);
    before_the_dlq_write: "kafka.before-commit[events-dlq]" => counts_case("kafka.before-commit[events-dlq]", 2, Before::Nothing);
    after_the_dlq_write: "kafka.after-commit[events-dlq]" => counts_case("kafka.after-commit[events-dlq]", 2, Before::Nothing);
    during_restore_load: "restore.load" => counts_case("restore.load", 1, Before::KilledAfterCheckpoints(3));
    during_restore_of_kafka_epochs: "restore.kafka-recover[counts]" => counts_case("restore.kafka-recover[counts]", 1, Before::KilledBeforeACommit);
    fraud_before_the_alerts_commit: "kafka.before-commit[fraud-alerts]" => fraud_case("kafka.before-commit[fraud-alerts]", 2);
    fraud_after_the_alerts_commit: "kafka.after-commit[fraud-alerts]" => fraud_case("kafka.after-commit[fraud-alerts]", 2);
    fraud_before_the_dlq_write: "kafka.before-commit[payments-dlq]" => fraud_case("kafka.before-commit[payments-dlq]", 2);
    fraud_after_the_dlq_write: "kafka.after-commit[payments-dlq]" => fraud_case("kafka.after-commit[payments-dlq]", 2);
    before_a_part_file_commit: "file.before-commit" => file_case("file.before-commit", 5);
    after_a_part_file_commit: "file.after-commit" => file_case("file.after-commit", 5);
}

#[test]
fn every_failpoint_has_a_case() {
    for f in floe_failpoints::FAILPOINTS {
        assert!(
            COVERED.iter().any(|c| c.split('[').next() == Some(f.name)),
            "no test kills at failpoint {}",
            f.name
        );
    }
    const { assert!(floe_failpoints::ENABLED, "built without the failpoints feature") };
}

/// A spec naming no real failpoint ends the job at once with a clear error: a typo must not
/// let a test pass without its kill.
#[test]
fn a_bad_failpoint_spec_stops_the_job_with_a_clear_error() {
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        counts_job(&broker, &dir.path().join("chk"), false),
        &dir.path().join("run.log"),
        "checkpoint.after-manfest=kill",
    );
    let log = run.wait(TO_FAILPOINT, "a job with a bad failpoint spec");
    assert_eq!(log.status.code(), Some(2), "{}", log.tail());
    assert!(
        log.stderr.contains("no failpoint `checkpoint.after-manfest`"),
        "{}",
        log.tail()
    );
}
