//! The fraud job's life on a cluster of real processes: stopped with a savepoint at
//! parallelism 2 and resumed at 3, and carried through a job manager killed with SIGKILL
//! and restarted (over HTTPS). Each time the committed alerts are exactly those of a
//! fault-free run.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::process::Command;
use std::time::Duration;

use floe_cluster::protocol::{JobState, ResumeRequest, SavepointRequest};
use floe_dsl::kafka::testing::TestBroker;
use floe_jobs::payments::{Payment, PaymentProfile};
use floe_testkit::cluster::{Cluster, TOKEN};

const PAYMENTS: u64 = 24_000;

fn profile(seed: u64) -> PaymentProfile {
    common::attack_profile(seed)
}

/// A broker with the fraud job's topics, payments written in the background.
fn broker_with_payments(seed: u64) -> (TestBroker, std::thread::JoinHandle<Result<(), String>>) {
    let broker = common::fraud_broker();
    let writer = common::write_payments(&broker, &profile(seed), PAYMENTS, 5_000, 1_000);
    (broker, writer)
}

fn submit(cluster: &Cluster, broker: &TestBroker, parallelism: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fraud"))
        .args(["submit", "--job-manager", &cluster.url, "--token", TOKEN])
        .args(cluster.ca_args())
        .args([
            "--parallelism",
            &parallelism.to_string(),
            "--checkpoint-interval-ms",
            "300",
        ])
        .args(["--", "--brokers", &broker.brokers(), "--state-cache-entries", "64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Checks the committed alerts against the rule applied to the payments.
fn assert_exact_alerts(broker: &TestBroker, seed: u64) {
    let all: Vec<Payment> = (0..PAYMENTS).map(|i| profile(seed).payment(i)).collect();
    cluster::assert_alerts_exact(broker, &all);
}

#[test]
fn stopped_with_a_savepoint_at_parallelism_2_and_resumed_at_3() {
    let (broker, writer) = broker_with_payments(11);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &[2, 2]);
    let id = submit(&cluster, &broker, 2);
    cluster.wait_job(&id, "the job to run and checkpoint", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.summary.last_checkpoint.is_some()
    });
    let client = cluster.client();
    let savepoint = client.stop(&id, &SavepointRequest::default()).unwrap();
    let stopped = cluster.wait_job(&id, "the job to stop", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Stopped
    });
    assert_eq!(stopped.savepoint.as_deref(), Some(savepoint.dir.as_str()));
    let resumed = client
        .resume(
            &id,
            &ResumeRequest {
                savepoint: None,
                parallelism: Some(3),
            },
        )
        .unwrap();
    assert_eq!(resumed.parallelism, 3);
    cluster.wait_job(&id, "the job to run at parallelism 3", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.summary.parallelism == 3
    });
    writer.join().unwrap().unwrap();
    cluster::advance_event_time(&broker, "payments", 4);
    assert_exact_alerts(&broker, 11);
    client.cancel(&id).unwrap();
}

#[test]
fn a_running_job_survives_a_job_manager_restart_over_https() {
    let (broker, writer) = broker_with_payments(12);
    let dir = tempfile::tempdir().unwrap();
    // Over HTTPS: the job binary submits itself, task managers and workers call back, all
    // trusting the job manager's self-signed certificate through --ca-cert.
    let mut cluster = Cluster::start_tls(dir.path(), &[2, 2]);
    assert!(cluster.url.starts_with("https://"), "{}", cluster.url);
    let id = submit(&cluster, &broker, 2);
    let before = cluster.wait_job(&id, "the job to run and checkpoint", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.summary.last_checkpoint.is_some()
    });
    cluster.restart_job_manager();
    // Still known, with its history; then running again under a new attempt.
    let after = cluster.wait_job(&id, "the job to run again", Duration::from_secs(60), |d| {
        d.summary.state == JobState::Running && d.attempt.is_some() && d.attempt != before.attempt
    });
    assert!(after.history.len() > before.history.len(), "history kept and extended");
    assert_eq!(after.summary.name, before.summary.name);
    writer.join().unwrap().unwrap();
    cluster::advance_event_time(&broker, "payments", 4);
    assert_exact_alerts(&broker, 12);
    cluster.client().cancel(&id).unwrap();
}
