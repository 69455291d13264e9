//! Throughput and memory of the fraud rule (CEP): generator → timestamps (2 s bounded
//! out-of-orderness) → key_by(user) → pattern (five FAILs within 60 s, skip past last) →
//! counting sink, on RocksDB state with checkpoints, in one process.
//!
//! ```text
//! cargo run --release -p floe-benches --bin cep-fraud -- --payments 10000000 --users 100000
//! ```
//!
//! Prints events/s per parallelism, with a generator-only baseline measured in the same run.
//! (`cep-memory` measures what a key costs.)

use std::time::{Duration, Instant};

use clap::Parser;
use floe_checkpoints::StateBackendKind;
use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_jobs::fraud::{self, Alert};
use floe_jobs::payments::{Payment, PaymentProfile};

#[derive(Parser, Debug)]
#[command(about = "Fraud-rule CEP throughput and memory")]
struct Args {
    /// Payments per run
    #[arg(long, default_value_t = 10_000_000)]
    payments: u64,
    /// Distinct users
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Share of failed payments
    #[arg(long, default_value_t = 0.2)]
    fail_ratio: f64,
    /// Parallelisms to measure, comma separated
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    parallelism: Vec<usize>,
    /// Checkpoint interval (ms)
    #[arg(long, default_value_t = 10_000)]
    checkpoint_interval_ms: u64,
}

fn profile(args: &Args) -> PaymentProfile {
    PaymentProfile {
        users: args.users,
        fail_ratio: args.fail_ratio,
        gap_ms: 1,
        max_disorder_ms: 2_000,
        attack_share: 0.01,
        ..PaymentProfile::default()
    }
}

/// Runs the rule (or, with `cep` false, only the generator and timestamps) and returns
/// (events/s, alerts, late events).
fn run(args: &Args, parallelism: usize, cep: bool) -> anyhow::Result<(f64, u64, u64)> {
    let tmp = std::env::temp_dir().join(format!("floe-bench-cep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let env = Env::with_config(JobConfig {
        parallelism,
        checkpoint_dir: Some(tmp.join("chk")),
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        state_backend: StateBackendKind::RocksDb {
            dir: tmp.join("state"),
            cache_entries: 1_000_000,
            block_cache_bytes: 64 << 20,
        },
        ..JobConfig::default()
    });
    let p = profile(args);
    let payments = env
        .generate(args.payments, move |i| p.payment(i))
        .assign_timestamps(|p: &Payment| p.ts, BoundedOutOfOrderness::new(Duration::from_secs(2)));
    let (count, late) = if cep {
        let matches = fraud::matches(&payments);
        let metrics = matches.metrics();
        (matches.select(|m| Alert::of(m.get("fails"))).count(), Some(metrics))
    } else {
        (payments.count(), None)
    };
    let started = Instant::now();
    env.execute("cep-fraud")?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    Ok((
        args.payments as f64 / secs,
        count.get(),
        late.map_or(0, |m| m.late.get()),
    ))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "fraud rule, {} payments, {} users, {:.0}% FAIL, up to 2 s out of order, RocksDB state, checkpoints every {} ms",
        args.payments,
        args.users,
        args.fail_ratio * 100.0,
        args.checkpoint_interval_ms
    );
    println!(
        "{:<28} {:>12} {:>10} {:>8}",
        "configuration", "events/s", "alerts", "late"
    );
    for &p in &args.parallelism {
        let (base, _, _) = run(&args, p, false)?;
        println!(
            "{:<28} {:>12.0} {:>10} {:>8}",
            format!("p{p} generator only"),
            base,
            "-",
            "-"
        );
        let (eps, alerts, late) = run(&args, p, true)?;
        println!(
            "{:<28} {:>12.0} {:>10} {:>8}",
            format!("p{p} generator → CEP"),
            eps,
            alerts,
            late
        );
    }
    Ok(())
}
