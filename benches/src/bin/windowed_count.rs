//! Throughput of a keyed 10-second tumbling count: generator → timestamps → key_by →
//! window(count) → counting sink, all in memory.
//!
//! ```text
//! cargo run --release -p floe-benches --bin windowed-count -- --events 20000000 --keys 100000
//! ```
//!
//! Prints one line per configuration (parallelism 1 and 2, chained and with a channel
//! between every operator), measured in this one run so that ratios are comparable.

use std::time::{Duration, Instant};

use clap::Parser;
use floe_checkpoints::StateBackendKind;
use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_jobs::payments::mix;

#[derive(Parser, Debug)]
#[command(about = "Keyed tumbling-window count throughput")]
struct Args {
    /// Events per run
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Distinct keys
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Parallelisms to measure, comma separated
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    parallelism: Vec<usize>,
    /// Events per millisecond of event time (100 puts every key in every 10 s window)
    #[arg(long, default_value_t = 100)]
    events_per_ms: u64,
    /// Skip the runs with chaining off
    #[arg(long)]
    chained_only: bool,
    /// Also measure each configuration with checkpoints every this many ms (0: don't)
    #[arg(long, default_value_t = 1000)]
    checkpoint_interval_ms: u64,
    /// Also measure the chained configuration with the RocksDB state backend
    #[arg(long)]
    rocksdb: bool,
    /// Entries per state the RocksDB backend caches on the heap (the jobs' default)
    #[arg(long, default_value_t = 1_000_000)]
    state_cache_entries: usize,
}

fn run(
    args: &Args,
    parallelism: usize,
    chaining: bool,
    checkpoints: bool,
    rocksdb: bool,
) -> anyhow::Result<(f64, u64)> {
    let dir = std::env::temp_dir().join(format!("floe-bench-chk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state_backend = if rocksdb {
        StateBackendKind::RocksDb {
            dir: std::env::temp_dir().join(format!("floe-bench-state-{}", std::process::id())),
            cache_entries: args.state_cache_entries,
            block_cache_bytes: 64 << 20,
        }
    } else {
        StateBackendKind::Memory
    };
    let env = Env::with_config(JobConfig {
        parallelism,
        chaining,
        checkpoint_dir: checkpoints.then(|| dir.clone()),
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        state_backend,
        ..JobConfig::default()
    });
    let (keys, per_ms) = (args.keys, args.events_per_ms.max(1));
    let windows = env
        .generate(args.events, move |i| (mix(i) % keys, (i / per_ms) as i64))
        .assign_timestamps(|e| e.1, BoundedOutOfOrderness::new(Duration::from_millis(100)))
        .key_by(|e| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(Count)
        .count();
    let start = Instant::now();
    let result = env.execute("windowed-count")?;
    let secs = start.elapsed().as_secs_f64();
    if checkpoints {
        println!("    {} checkpoints completed", result.last_checkpoint.unwrap_or(0));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((args.events as f64 / secs, windows.get()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "windowed count: {} events, {} keys, 10 s tumbling event-time windows, in-memory state",
        args.events, args.keys
    );
    let mut chained = Vec::new();
    for &p in &args.parallelism {
        for chaining in [true, false] {
            if !chaining && args.chained_only {
                continue;
            }
            let (rate, windows) = run(&args, p, chaining, false, false)?;
            if chaining {
                chained.push((p, rate));
            }
            let base = chained.iter().find(|(q, _)| *q == p).map_or(1.0, |(_, r)| *r);
            println!(
                "parallelism {p} chaining {:<3}: {:>12.0} events/s ({:.2}x of chained) — {windows} window results",
                if chaining { "on" } else { "off" },
                rate,
                rate / base
            );
            if chaining && args.checkpoint_interval_ms > 0 {
                let (rate, _) = run(&args, p, chaining, true, false)?;
                println!(
                    "parallelism {p} chaining on, checkpoints every {} ms: {:>12.0} events/s ({:.2}x)",
                    args.checkpoint_interval_ms,
                    rate,
                    rate / base
                );
            }
            if chaining && args.rocksdb {
                let (rate, _) = run(&args, p, chaining, false, true)?;
                println!(
                    "parallelism {p} chaining on, RocksDB state:      {:>12.0} events/s ({:.2}x of in-memory)",
                    rate,
                    rate / base
                );
            }
        }
    }
    Ok(())
}
