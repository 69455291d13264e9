//! The fraud job submitted to a job manager and run by two task managers on loopback (real
//! processes, subtasks exchanging records over TCP); one task manager is killed with SIGKILL
//! mid-stream. The job recovers on the other from its latest checkpoint, and the committed
//! alerts are exactly those of a fault-free run (the rule applied directly to the payments),
//! each once.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_exactly_once, dead_letter_origin, malformed_payments};
use floe_cluster::protocol::JobState;
use floe_jobs::payments::{Payment, PaymentProfile};
use floe_testkit::cluster::{Cluster, TOKEN};

const PAYMENTS: u64 = 30_000;

fn profile() -> PaymentProfile {
    common::attack_profile(7)
}

#[test]
fn fraud_job_recovers_on_the_other_task_manager_when_one_is_killed() {
    let broker = common::fraud_broker();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &[2, 2]);

    let writer = common::write_payments(&broker, &profile(), PAYMENTS, 6_000, 1_000);

    let out = Command::new(env!("CARGO_BIN_EXE_fraud"))
        .args(["submit", "--job-manager", &cluster.url, "--token", TOKEN])
        .args([
            "--parallelism",
            "2",
            "--checkpoint-interval-ms",
            "300",
            "--restart",
            "fixed:5:100",
        ])
        .args(["--", "--brokers", &broker.brokers(), "--state-cache-entries", "64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("j-"), "a job id: {id}");

    // Running on both task managers, with a checkpoint of both workers' state.
    let before = cluster.wait_job(&id, "the job to run and checkpoint", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.summary.last_checkpoint.is_some()
    });
    let used: Vec<usize> = cluster
        .client()
        .taskmanagers()
        .unwrap()
        .iter()
        .map(|t| t.slots_used)
        .collect();
    assert_eq!(used, vec![1, 1], "parallelism 2 spread over both task managers");

    // Kill the second task manager (its worker dies with it) while payments still arrive.
    let killed = Instant::now();
    drop(cluster.tms.remove(1));
    let after = cluster.wait_job(&id, "the job to run again", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.attempt != before.attempt
    });
    println!(
        "recovered in {:?}: attempt {:?} -> {:?}, restarts {}",
        killed.elapsed(),
        before.attempt,
        after.attempt,
        after.summary.restarts
    );
    assert!(after.summary.restarts >= 1);
    assert!(
        after.exceptions.iter().any(|e| e.message.contains("task manager")),
        "the loss is recorded: {:?}",
        after.exceptions
    );
    writer.join().unwrap().unwrap();
    cluster::advance_event_time(&broker, "payments", 4);

    let all: Vec<Payment> = (0..PAYMENTS).map(|i| profile().payment(i)).collect();
    cluster::assert_alerts_exact(&broker, &all);
    // Cancelled before the input is read back: the reader's end markers would be malformed
    // payments for a job still following the topic.
    let cancelled = cluster.client().cancel(&id).unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let malformed = malformed_payments(&broker, "payments");
    assert_eq!(
        malformed.len() as u64,
        PAYMENTS / 1_000,
        "the malformed payments written"
    );
    assert_exactly_once(&broker, "payments-dlq", malformed, dead_letter_origin);
}
