//! Seeded random SIGKILL campaigns on one process: `kafka-counts` and the fraud job read a
//! topic while it is written and are killed with SIGKILL again and again, each time at a
//! random moment after the run completed a checkpoint, and restarted. Each restart must
//! restore the newest complete checkpoint on disk; at the end (a bounded last run) the
//! committed output must be a fault-free run's: every input counted once, each alert the
//! rule raises once, each malformed record in the dead-letter topic once.
//!
//! The suite runs a short campaign (5 kills, 100,000 events). The long one:
//!
//! ```text
//! FLOE_CAMPAIGN_KILLS=20 FLOE_CAMPAIGN_EVENTS=1000000 \
//!     cargo test --workspace --all-features --test kill_campaign -- --nocapture --test-threads 1
//! ```
//!
//! (`FLOE_CAMPAIGN_RATE`, input records a second, default 10,000; `FLOE_CAMPAIGN_SEED`
//! replays a campaign.) Each test prints its figures: kills, checkpoints completed between
//! them, restores checked, recovery time (kill to the next run's first completed checkpoint)
//! p50/p99, and the outputs checked.

mod common;
mod kill_runs;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kill_runs::{
    assert_counts_exact, assert_fraud_exact, assert_restored_newest, broker, campaign_rng, counts_job, env_number,
    fraud_job, newest_complete, write_counts_input, Figures, Running,
};

/// The campaign's size: kills, input records, records a second.
fn size() -> (usize, u64, u64) {
    (
        env_number("FLOE_CAMPAIGN_KILLS", 5) as usize,
        env_number("FLOE_CAMPAIGN_EVENTS", 100_000),
        env_number("FLOE_CAMPAIGN_RATE", 10_000).max(1),
    )
}

/// Starts, kills and restarts `command(false)` `kills` times while the input is written,
/// spreading the kills over the time the input takes (`input_ms`); then runs `command(true)`
/// to the end of the input (after `input_done`). Checks every restore; returns the figures.
fn campaign(
    what: &str,
    dir: &Path,
    command: impl Fn(bool) -> Command,
    kills: usize,
    input_ms: u64,
    input_done: impl FnOnce(),
) -> Figures {
    let chk = dir.join("chk");
    let mut seeded = campaign_rng(what);
    let mut figures = Figures::default();
    let mut killed_at: Option<Instant> = None;
    // Runs take about a second to start and complete a checkpoint; the rest of each run's
    // share of the input time is where the kill lands.
    let spread = (input_ms / kills.max(1) as u64).saturating_sub(1_000).max(300);
    for k in 0..kills {
        let on_disk = newest_complete(&chk);
        let mut run = Running::start(command(false), &dir.join(format!("run-{k}.log")), "");
        run.wait_for_log(Duration::from_secs(120), "a checkpoint completed by this run", |log| {
            log.contains("checkpoint complete")
        });
        if let Some(at) = killed_at {
            figures.recovery.push(at.elapsed());
        }
        let extra = Duration::from_millis(seeded.below(spread));
        let started = Instant::now();
        // The random moment of the kill: time is the point here, not a synchronization.
        while started.elapsed() < extra {
            assert!(run.child.try_wait().unwrap().is_none(), "run {k} ended on its own");
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = run.kill();
        killed_at = Some(Instant::now());
        assert!(log.sigkilled());
        assert_restored_newest(&log, on_disk, true);
        let completed = log.completed();
        assert!(!completed.is_empty(), "run {k} completed no checkpoint");
        figures.kills += 1;
        figures.restores += usize::from(on_disk.is_some());
        figures.checkpoints.push(completed.len());
        // A line per kill, so a long campaign shows how far it got.
        println!(
            "{what}: kill {} after {} checkpoints (restored {:?}){}",
            k + 1,
            completed.len(),
            log.restored(),
            figures
                .recovery
                .last()
                .map(|r| format!(", recovered in {r:?}"))
                .unwrap_or_default()
        );
    }
    println!("{what}: the bounded last run");
    input_done();
    kill_runs::run_last(command(true), dir, &chk, Duration::from_secs(900));
    figures.restores += 1;
    figures
}

#[test]
fn kafka_counts_survives_a_seeded_sigkill_campaign() {
    let (kills, events, rate) = size();
    let events = events - events % kill_runs::KEYS;
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let brokers = broker.brokers();
    let input = std::thread::spawn(move || write_counts_input(brokers, events, rate));
    let mut bad = Vec::new();
    let chk = dir.path().join("chk");
    let started = Instant::now();
    let figures = campaign(
        "kafka-counts campaign",
        dir.path(),
        |bounded| counts_job(&broker, &chk, bounded),
        kills,
        events * 1_000 / rate,
        || bad = input.join().unwrap(),
    );
    let outputs = assert_counts_exact(&broker, events, &bad);
    println!(
        "{} ({:?} in all)",
        figures.summary("kafka-counts", outputs, (events as usize) + bad.len()),
        started.elapsed()
    );
}

#[test]
fn fraud_survives_a_seeded_sigkill_campaign() {
    const MALFORMED_EVERY: u64 = 1_000;
    let (kills, payments, rate) = size();
    let broker = broker();
    let dir = tempfile::tempdir().unwrap();
    let profile = common::attack_profile(77);
    let writer = common::write_payments(&broker, &profile, payments, rate, MALFORMED_EVERY);
    let chk = dir.path().join("chk");
    let started = Instant::now();
    let figures = campaign(
        "fraud campaign",
        dir.path(),
        |bounded| fraud_job(&broker, &chk, bounded),
        kills,
        payments * 1_000 / rate,
        || writer.join().unwrap().unwrap(),
    );
    let outputs = assert_fraud_exact(&broker, &profile, payments, MALFORMED_EVERY);
    println!(
        "{} ({:?} in all)",
        figures.summary("fraud", outputs, (payments + payments / MALFORMED_EVERY) as usize),
        started.elapsed()
    );
}
