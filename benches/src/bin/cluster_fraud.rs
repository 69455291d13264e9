//! The fraud rule (generator → timestamps → key_by(user) → CEP → counting sink, RocksDB
//! state, checkpoints) run across two task managers — two worker processes exchanging
//! records over TCP — against the same job in one process, measured in one run; and the
//! time from a task manager's death to the job running again.
//!
//! ```text
//! cargo build --release -p floe-dsl --bin floe
//! cargo run --release -p floe-benches --bin cluster-fraud -- --payments 4000000
//! ```
//!
//! `--recovery-state-mb 1024` measures the recovery with about 1 GB of keyed state: the job
//! then also keeps a blob of `--ballast-bytes` per key in RocksDB, and the task manager is
//! killed once a checkpoint holds that much.
//!
//! The binary is also the job: `cluster-fraud run|worker ...` runs it (the harness submits
//! itself to a job manager it starts, as users submit their jobs).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use floe_checkpoints::StateBackendKind;
use floe_cluster::client::Client;
use floe_cluster::protocol::{JobDetail, JobState, SubmitRequest};
use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_jobs::fraud::{self, Alert};
use floe_jobs::payments::{Payment, PaymentProfile};

#[derive(Parser, Debug)]
#[command(about = "Fraud rule across two task managers vs one process")]
struct Args {
    /// Payments per run
    #[arg(long, default_value_t = 4_000_000)]
    payments: u64,
    /// Distinct users
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Checkpoint interval (ms)
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval_ms: u64,
    /// Runs of each configuration
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Skip the recovery measurement
    #[arg(long)]
    no_recovery: bool,
    /// State to build up before the recovery measurement kills a task manager (MB); 0 for
    /// the fraud rule's own state only
    #[arg(long, default_value_t = 0)]
    recovery_state_mb: u64,
    /// Bytes per key of the extra keyed state that `--recovery-state-mb` builds
    #[arg(long, default_value_t = 512)]
    ballast_bytes: usize,
}

/// The job's own arguments.
#[derive(Parser, Debug)]
struct JobArgs {
    #[arg(long)]
    payments: u64,
    #[arg(long)]
    users: u32,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval_ms: u64,
    #[arg(long)]
    state_dir: PathBuf,
    /// Keys of extra keyed state (0: none)
    #[arg(long, default_value_t = 0)]
    ballast_keys: u64,
    /// Bytes of extra state per key
    #[arg(long, default_value_t = 512)]
    ballast_bytes: usize,
}

/// Keeps a blob per key: state to recover, and nothing else.
#[derive(Clone)]
struct Ballast {
    blob: ValueStateDescriptor<Vec<u8>>,
    bytes: usize,
}

impl KeyedProcessFunction<u64, Payment, u64> for Ballast {
    fn process_element(
        &mut self,
        p: Payment,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<u64>,
    ) -> Result<(), UserError> {
        // Incompressible bytes, so the state on disk is as large as it says.
        let mut x = p.event_id | 1;
        let blob = (0..self.bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        ctx.state().set(&self.blob, blob)?;
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let word = std::env::args().nth(1);
    if matches!(word.as_deref(), Some("run" | "worker" | "graph")) {
        return job();
    }
    harness(&Args::parse())
}

/// The job: prints its wall time when run here.
fn job() -> anyhow::Result<()> {
    let args = JobArgs::parse_from(floe_dsl::job::args());
    init_logging();
    let env = Env::with_config(JobConfig {
        parallelism: args.parallelism,
        checkpoint_dir: Some(args.state_dir.join("chk")),
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        state_backend: StateBackendKind::RocksDb {
            dir: args.state_dir.join("state"),
            cache_entries: 1_000_000,
            block_cache_bytes: 64 << 20,
        },
        ..JobConfig::default()
    });
    let p = PaymentProfile {
        users: args.users,
        fail_ratio: 0.2,
        gap_ms: 1,
        max_disorder_ms: 2_000,
        attack_share: 0.01,
        ..PaymentProfile::default()
    };
    let payments = env
        .generate(args.payments, move |i| p.payment(i))
        .assign_timestamps(|p: &Payment| p.ts, BoundedOutOfOrderness::new(Duration::from_secs(2)));
    let alerts = fraud::matches(&payments).select(|m| Alert::of(m.get("fails"))).count();
    if args.ballast_keys > 0 {
        let keys = args.ballast_keys;
        payments
            .key_by(move |p: &Payment| p.event_id % keys)
            .process(Ballast {
                blob: ValueStateDescriptor::new("ballast"),
                bytes: args.ballast_bytes,
            })
            .count();
    }
    let started = Instant::now();
    env.execute("cluster-fraud")?;
    println!("elapsed {:.3} alerts {}", started.elapsed().as_secs_f64(), alerts.get());
    Ok(())
}

/// A child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TOKEN: &str = "bench-token";

fn start_cluster(floe: &Path, dir: &Path, tms: usize) -> anyhow::Result<(Proc, Vec<Proc>, Client)> {
    let mut jm = Command::new(floe)
        .args(["jobmanager", "--bind", "127.0.0.1:0", "--token", TOKEN])
        .args(["--heartbeat-interval-ms", "300", "--heartbeat-timeout-ms", "3000"])
        .arg("--data-dir")
        .arg(dir.join("jm"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(jm.stdout.take().expect("piped")).lines();
    let url = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("the job manager ended"))??;
        if let Some(u) = line.strip_prefix("floe job manager listening on ") {
            break u.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let jm = Proc(jm);
    let mut procs = Vec::new();
    for i in 0..tms {
        procs.push(Proc(
            Command::new(floe)
                .args(["taskmanager", "--job-manager", &url, "--token", TOKEN, "--slots", "2"])
                .arg("--work-dir")
                .arg(dir.join(format!("tm{i}")))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?,
        ));
    }
    let client = Client::new(url, Some(TOKEN.into()))?;
    wait(Duration::from_secs(30), || {
        Ok((client.taskmanagers()?.len() == tms).then_some(()))
    })?;
    Ok((jm, procs, client))
}

fn wait<T>(timeout: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn at(d: &JobDetail, state: JobState) -> Option<i64> {
    d.history.iter().rev().find(|h| h.state == state).map(|h| h.at)
}

fn job_args(args: &Args, dir: &Path) -> Vec<String> {
    vec![
        "--payments".into(),
        args.payments.to_string(),
        "--users".into(),
        args.users.to_string(),
        "--checkpoint-interval-ms".into(),
        args.checkpoint_interval_ms.to_string(),
        "--state-dir".into(),
        dir.display().to_string(),
    ]
}

fn harness(args: &Args) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let floe = me.with_file_name("floe");
    anyhow::ensure!(
        floe.exists(),
        "{} is missing: cargo build --release -p floe-dsl --bin floe",
        floe.display()
    );
    let tmp = std::env::temp_dir().join(format!("floe-bench-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "fraud rule, {} payments, {} users, parallelism 2, RocksDB state, checkpoints every {} ms",
        args.payments, args.users, args.checkpoint_interval_ms
    );
    println!("{:<44} {:>12} {:>8}", "configuration", "events/s", "alerts");
    let (_jm, _tms, client) = start_cluster(&floe, &tmp.join("cluster"), 2)?;
    let artifact = client.upload_artifact_file(&me, Some("cluster-fraud"))?;
    for round in 0..args.repeat {
        // One process, two subtasks.
        let out = Command::new(&me)
            .arg("run")
            .args(job_args(args, &tmp.join(format!("local-{round}"))))
            .env("RUST_LOG", "warn")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "local run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("elapsed ")).unwrap_or_default();
        let parts: Vec<&str> = line.split_whitespace().collect();
        let local_secs: f64 = parts.get(1).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        let local = args.payments as f64 / local_secs;
        println!(
            "{:<44} {:>12.0} {:>8}",
            "one process, 2 subtasks",
            local,
            parts.get(3).unwrap_or(&"?")
        );

        // Two task managers, one subtask each, records crossing TCP.
        let job = client.submit(&SubmitRequest {
            artifact: artifact.sha256.clone(),
            args: job_args(args, &tmp.join(format!("cluster-state-{round}"))),
            parallelism: 2,
            name: Some("cluster-fraud".into()),
            restart: None,
            checkpoint_interval_ms: Some(args.checkpoint_interval_ms),
            savepoint: None,
        })?;
        let done = wait(Duration::from_secs(600), || {
            let d = client.job(&job.id)?;
            anyhow::ensure!(d.summary.state != JobState::Failed, "job failed: {:?}", d.exceptions);
            Ok((d.summary.state == JobState::Finished).then_some(d))
        })?;
        let secs =
            (at(&done, JobState::Finished).unwrap_or(0) - at(&done, JobState::Running).unwrap_or(0)) as f64 / 1e3;
        let spread = args.payments as f64 / secs;
        println!(
            "{:<44} {:>12.0} {:>8}",
            "two task managers over TCP, 1 subtask each", spread, "-"
        );
        println!(
            "{:<44} {:>12.2}",
            "ratio (two task managers / one process)",
            spread / local
        );
    }

    if !args.no_recovery {
        // Time from a task manager's death to the job running again, on fresh task managers.
        let (_jm2, mut tms, client) = start_cluster(&floe, &tmp.join("recovery"), 2)?;
        let artifact = client.upload_artifact_file(&me, Some("cluster-fraud"))?;
        let mut recovery_args = job_args(
            &Args {
                payments: u64::MAX / 4,
                ..Args::parse_from(["x"])
            },
            &tmp.join("recovery-state"),
        );
        let target = args.recovery_state_mb << 20;
        if target > 0 {
            let keys = target / args.ballast_bytes.max(1) as u64;
            recovery_args.extend([
                "--ballast-keys".into(),
                keys.to_string(),
                "--ballast-bytes".into(),
                args.ballast_bytes.to_string(),
            ]);
        }
        let job = client.submit(&SubmitRequest {
            artifact: artifact.sha256,
            args: recovery_args,
            parallelism: 2,
            name: Some("recovery".into()),
            restart: None,
            checkpoint_interval_ms: Some(1_000),
            savepoint: None,
        })?;
        let before = wait(Duration::from_secs(900), || {
            let d = client.job(&job.id)?;
            let bytes = d.checkpoints.last().map_or(0, |c| c.bytes);
            let ready = d.summary.state == JobState::Running && d.checkpoints.len() >= 3 && bytes >= target;
            Ok(ready.then_some(d))
        })?;
        let bytes = before.checkpoints.last().map_or(0, |c| c.bytes);
        let killed = Instant::now();
        drop(tms.remove(1));
        let after = wait(Duration::from_secs(120), || {
            let d = client.job(&job.id)?;
            Ok((d.summary.state == JobState::Running && d.attempt != before.attempt).then_some(d))
        })?;
        let running = killed.elapsed();
        // Processing again: a checkpoint of the new attempt completed.
        let last = after.summary.last_checkpoint;
        wait(Duration::from_secs(120), || {
            let d = client.job(&job.id)?;
            Ok((d.summary.last_checkpoint > last).then_some(()))
        })?;
        println!(
            "recovery: task manager killed -> job running again {:.2} s, -> next checkpoint {:.2} s (checkpoint {} bytes)",
            running.as_secs_f64(),
            killed.elapsed().as_secs_f64(),
            bytes
        );
        client.cancel(&job.id)?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
