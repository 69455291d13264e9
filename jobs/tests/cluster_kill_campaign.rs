//! A seeded random SIGKILL campaign on a cluster of real processes: the fraud job runs on a
//! job manager and two task managers while payments are written, and the job manager or a
//! task manager (with its worker) is killed with SIGKILL again and again, each time at a
//! random moment after the job recovered and completed a checkpoint; a killed task manager
//! is replaced by a new one, a killed job manager restarted on its address and data. Each
//! new attempt must restore the newest checkpoint completed before it; at the end, the
//! committed alerts are exactly those of a fault-free run (the rule applied directly to the
//! payments), each once, and each malformed payment is in the dead-letter topic once.
//!
//! The suite runs a short campaign (3 kills, 30,000 payments). The long one:
//!
//! ```text
//! FLOE_CAMPAIGN_KILLS=20 FLOE_CAMPAIGN_EVENTS=1000000 \
//!     cargo test --workspace --all-features --test cluster_kill_campaign -- --nocapture
//! ```
//!
//! (`FLOE_CAMPAIGN_RATE`, payments a second, default 3,000; `FLOE_CAMPAIGN_SEED` replays a
//! campaign.)

#[path = "common/cluster.rs"]
mod cluster;
mod common;
mod kill_runs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use floe_cluster::protocol::JobState;
use floe_testkit::cluster::{Cluster, TOKEN};
use kill_runs::{
    assert_fraud_exact, campaign_rng, checkpoint_ids, env_number, expected_alerts, malformed_payments,
    wait_for_outputs, Figures, RUN_LOG,
};

const MALFORMED_EVERY: u64 = 1_000;

/// Starts task manager number `n` (its own work directory: two task managers must never
/// share one) with two slots, its stderr (with its workers', labelled `[<job> attempt <a>
/// worker <w>]`) in a file; returns the file.
fn add_logged_task_manager(cluster: &mut Cluster, dir: &Path, n: usize) -> PathBuf {
    let log = dir.join(format!("tm{n}.log"));
    cluster.add_task_manager_logged(2, &log, Some(RUN_LOG));
    log
}

/// What worker 0 of `attempt` logged, over every task manager's log: the checkpoint it
/// restored and the first checkpoint it completed.
fn attempt_log(logs: &[PathBuf], job: &str, attempt: u64) -> (Option<u64>, Option<u64>) {
    let label = format!("[{job} attempt {attempt} worker 0]");
    let number = |line: &str| -> Option<u64> {
        let at = line.find("checkpoint=")? + "checkpoint=".len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let (mut restored, mut first) = (None, None);
    for log in logs {
        for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
            if !line.contains(&label) {
                continue;
            }
            if line.contains("restoring from checkpoint") {
                restored = restored.or(number(line));
            } else if line.contains("checkpoint complete") {
                first = first.or(number(line));
            }
        }
    }
    (restored, first)
}

#[test]
fn fraud_on_a_cluster_survives_a_seeded_campaign_of_task_manager_and_job_manager_kills() {
    let kills = env_number("FLOE_CAMPAIGN_KILLS", 3) as usize;
    let payments = env_number("FLOE_CAMPAIGN_EVENTS", 30_000);
    let rate = env_number("FLOE_CAMPAIGN_RATE", 3_000).max(1);
    let mut seeded = campaign_rng("cluster campaign");
    let broker = kill_runs::broker();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &[]);
    let mut logs = vec![
        add_logged_task_manager(&mut cluster, dir.path(), 0),
        add_logged_task_manager(&mut cluster, dir.path(), 1),
    ];
    cluster.wait_task_managers(2);

    let profile = common::attack_profile(41);
    let writer = common::write_payments(&broker, &profile, payments, rate, MALFORMED_EVERY);
    let out = Command::new(env!("CARGO_BIN_EXE_fraud"))
        .args(["submit", "--job-manager", &cluster.url, "--token", TOKEN])
        .args(["--parallelism", "2", "--checkpoint-interval-ms", "200"])
        .args(["--restart", &format!("fixed:{}:100", kills * 2 + 5)])
        .args(["--", "--brokers", &broker.brokers(), "--state-cache-entries", "64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let chk = dir.path().join("jm").join("checkpoints").join(&id);
    let started = Instant::now();

    let mut figures = Figures::default();
    let mut attempt = None;
    let mut killed_at: Option<Instant> = None;
    let mut victims = Vec::new();
    let spread = (payments * 1_000 / rate / kills.max(1) as u64)
        .saturating_sub(4_000)
        .max(500);
    for k in 0..=kills {
        // Running under a new attempt, which restored and then completed a checkpoint.
        let deadline = Instant::now() + Duration::from_secs(120);
        let detail = loop {
            let d = cluster.client().job(&id).ok();
            let recovered = d.as_ref().is_some_and(|d| {
                d.summary.state == JobState::Running
                    && d.attempt.is_some()
                    && d.attempt != attempt
                    && d.attempt.is_some_and(|a| attempt_log(&logs, &id, a).1.is_some())
            });
            if let (true, Some(d)) = (recovered, &d) {
                break d.clone();
            }
            if Instant::now() > deadline || d.as_ref().is_some_and(|d| d.summary.state == JobState::Failed) {
                panic!(
                    "after kill {k} ({:?}): no new attempt with a checkpoint; the job: {:?}\nworker logs end:\n{}",
                    victims.last(),
                    d.map(|d| (
                        d.summary,
                        d.attempt,
                        d.exceptions.into_iter().rev().take(3).collect::<Vec<_>>()
                    )),
                    logs.iter()
                        .map(|l| {
                            let text = std::fs::read_to_string(l).unwrap_or_default();
                            let lines: Vec<&str> = text.lines().collect();
                            lines[lines.len().saturating_sub(8)..].join("\n")
                        })
                        .collect::<Vec<_>>()
                        .join("\n--\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let now = detail.attempt.unwrap_or_default();
        if let Some(at) = killed_at {
            figures.recovery.push(at.elapsed());
        }
        let (restored, first) = attempt_log(&logs, &id, now);
        let first = first.unwrap_or_default();
        // The newest checkpoint complete before this attempt's first: what it had to restore.
        let newest_before = checkpoint_ids(&chk).into_iter().filter(|c| *c < first).max();
        assert_eq!(
            restored, newest_before,
            "attempt {now} restored {restored:?}, the newest complete checkpoint before its first ({first}) is \
             {newest_before:?}"
        );
        figures.restores += usize::from(restored.is_some());
        // A line per step, so a long campaign shows how far it got.
        println!(
            "[{:>6.1?}] attempt {now} running: restored {restored:?}, first checkpoint {first}{}",
            started.elapsed(),
            figures
                .recovery
                .last()
                .map(|r| format!(", {r:?} after kill {k} ({})", victims[k - 1]))
                .unwrap_or_default()
        );
        attempt = Some(now);
        if k == kills {
            break;
        }
        let extra = Duration::from_millis(seeded.below(spread));
        let wait = Instant::now();
        // The random moment of the kill: time is the point here, not a synchronization.
        while wait.elapsed() < extra {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A third of the kills hit the job manager, and at least one does.
        let last_chance = k + 1 == kills && !victims.contains(&"job manager");
        match if last_chance { 0 } else { seeded.below(3) } {
            0 => {
                victims.push("job manager");
                cluster.restart_job_manager();
            }
            tm => {
                // A task manager that runs a worker of the job (killing an idle one changes
                // nothing: both workers can land on one task manager).
                let busy: Vec<u32> = cluster
                    .client()
                    .taskmanagers()
                    .unwrap()
                    .iter()
                    .filter(|t| t.slots_used > 0)
                    .map(|t| t.pid)
                    .collect();
                let candidates: Vec<usize> = (0..cluster.tms.len())
                    .filter(|i| busy.contains(&cluster.tms[*i].0.id()))
                    .collect();
                assert!(!candidates.is_empty(), "no task manager runs the job: {busy:?}");
                let tm = candidates[(tm as usize - 1) % candidates.len()];
                victims.push("task manager");
                drop(cluster.tms.remove(tm)); // SIGKILL; its worker dies with it
                let n = logs.len();
                logs.push(add_logged_task_manager(&mut cluster, dir.path(), n));
            }
        }
        killed_at = Some(Instant::now());
        figures.kills += 1;
    }
    // Checkpoints completed by each attempt, from worker 0's logs.
    let mut per_attempt = std::collections::BTreeMap::new();
    for log in &logs {
        for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
            if let (Some(at), true) = (line.find(" attempt "), line.contains("checkpoint complete")) {
                let a: String = line[at + 9..].chars().take_while(|c| c.is_ascii_digit()).collect();
                if line.contains(&format!("[{id} attempt {a} worker 0]")) {
                    *per_attempt.entry(a).or_insert(0usize) += 1;
                }
            }
        }
    }
    figures.checkpoints = per_attempt.values().copied().collect();
    println!("victims: {victims:?}; waiting for the writer and then every output");

    writer.join().unwrap().unwrap();
    cluster::advance_event_time(&broker, "payments", 4);
    let timeout = Duration::from_secs(300);
    wait_for_outputs(
        &broker,
        "fraud-alerts",
        expected_alerts(&profile, payments).len(),
        timeout,
    );
    wait_for_outputs(
        &broker,
        "payments-dlq",
        malformed_payments(&profile, payments, MALFORMED_EVERY).len(),
        timeout,
    );
    let outputs = assert_fraud_exact(&broker, &profile, payments, MALFORMED_EVERY);
    println!(
        "{} ({:?} in all)",
        figures.summary(
            "fraud on a cluster",
            outputs,
            (payments + payments / MALFORMED_EVERY) as usize
        ),
        started.elapsed()
    );
    assert_eq!(cluster.client().cancel(&id).unwrap().state, JobState::Cancelled);
}
