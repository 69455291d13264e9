//! The fraud job through Kafka, killed with SIGKILL at random moments while payments are
//! being written, and restarted from its checkpoints each time: the committed alerts are
//! exactly those of an uninterrupted run — the rule applied directly to the payments — each
//! once, and each malformed payment is in the dead-letter topic once. (Committed as a
//! read-committed consumer would see them, from the raw log: the test broker does not hide
//! aborted transactions from consumers.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{alert_payments, assert_exactly_once, dead_letter_origin, malformed_payments};
use floe_dsl::kafka::testing::TestBroker;
use floe_jobs::fraud;
use floe_jobs::payments::{Payment, PaymentProfile};
use floe_testkit::crash::{kill_at, KillMoment, TestRng};

const PAYMENTS: u64 = 30_000;

fn profile() -> PaymentProfile {
    common::attack_profile(99)
}

fn job(broker: &TestBroker, chk: &Path, bounded: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fraud"));
    c.args(["--brokers", &broker.brokers(), "--parallelism", "2"])
        .args(["--checkpoint-interval-ms", "300", "--state-cache-entries", "64"])
        .arg("--checkpoint-dir")
        .arg(chk)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if bounded {
        c.arg("--bounded");
    }
    c
}

#[test]
fn sigkilled_fraud_job_commits_each_alert_exactly_once() {
    let broker = common::fraud_broker();
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");

    // About 8,000 payments a second, with a malformed one now and then, while the job is
    // killed; one record per batch, since the bounded last run needs the test broker's end
    // offsets right.
    let writer = common::write_payments(&broker, &profile(), PAYMENTS, 8_000, 1_000);

    // Kills 1, 3 and 5 at a random moment after the run completed a checkpoint of its own,
    // 2 and 4 at a random moment after its start (start-up and restore included).
    let mut rng = TestRng::from_env_or_time();
    for kill in 1..=5 {
        let moment = KillMoment::alternating(kill, &chk, &mut rng, 0..=600, 400..=1_200);
        let child = job(&broker, &chk, false).spawn().unwrap();
        assert!(kill_at(child, moment), "the unbounded job ended on its own");
    }
    writer.join().unwrap().unwrap();
    let out = job(&broker, &chk, true).stdout(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the last run failed: {}", out.status);
    assert!(
        stdout.contains("restored from checkpoint Some("),
        "the last run did not restore from a checkpoint of the killed ones: {stdout}"
    );

    let all: Vec<Payment> = (0..PAYMENTS).map(|i| profile().payment(i)).collect();
    let expected: Vec<Vec<u64>> = fraud::oracle(&all).into_iter().map(|a| a.event_ids).collect();
    assert!(expected.len() > 50, "the data raises alerts: {}", expected.len());
    assert_exactly_once(&broker, "fraud-alerts", expected, alert_payments);
    let malformed = malformed_payments(&broker, "payments");
    assert_eq!(
        malformed.len() as u64,
        PAYMENTS / 1_000,
        "the malformed payments written"
    );
    assert_exactly_once(&broker, "payments-dlq", malformed, dead_letter_origin);
}
