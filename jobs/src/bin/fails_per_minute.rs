//! Failed payments per user per minute of event time.
//!
//! Reads payments (JSON lines) — generating a sample file on first run —, keeps the FAIL
//! events, counts them per user in one-minute tumbling event-time windows with 2 s of
//! out-of-orderness and 5 s of allowed lateness, and writes the counts as JSON lines. Records
//! later than that, and lines that are not valid payments, are written to files of their own:
//! nothing is dropped silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use floe_dsl::prelude::*;
use floe_jobs::payments::{Payment, PaymentProfile, Status};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "fails-per-minute",
    about = "Failed payments per user per minute of event time"
)]
struct Args {
    #[command(flatten)]
    floe: EnvOptions,
    /// Payments to read, one JSON object per line
    #[arg(long, default_value = "target/floe-demo/payments.jsonl")]
    input: PathBuf,
    /// Where the counts go
    #[arg(long, default_value = "target/floe-demo/fails-per-minute.jsonl")]
    output: PathBuf,
    /// Where records later than the allowed lateness go
    #[arg(long, default_value = "target/floe-demo/late-payments.jsonl")]
    late_output: PathBuf,
    /// Where malformed input lines go
    #[arg(long, default_value = "target/floe-demo/bad-records.jsonl")]
    bad_output: PathBuf,
    /// If the input file does not exist, generate this many payments into it first
    #[arg(long, default_value_t = 1_000_000)]
    generate: u64,
}

/// One output row.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
struct FailsPerMinute {
    user_id: u32,
    window_start: i64,
    window_end: i64,
    fails: u64,
}

/// Writes a sample input: generated payments, a few very late ones, and a few malformed lines.
fn generate_sample(path: &Path, count: u64) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let profile = PaymentProfile::default();
    for i in 0..count {
        let mut p = profile.payment(i);
        if i % 50_000 == 49_999 {
            p.ts -= 120_000; // two minutes late: beyond the allowed lateness
        }
        serde_json::to_writer(&mut w, &p)?;
        w.write_all(b"\n")?;
        if i % 100_000 == 50_000 {
            w.write_all(b"{\"event_id\": \"not-a-number\", \"user_id\": 1}\n")?;
            w.write_all(b"this line is not json\n")?;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(floe_dsl::job::args()); // run, graph, submit or worker
    init_logging();
    let env = Env::from_options(&args.floe)?;
    if !args.input.exists() {
        eprintln!("generating {} payments into {}", args.generate, args.input.display());
        generate_sample(&args.input, args.generate)?;
    }

    let late: OutputTag<Payment> = OutputTag::new("late-payments");
    let payments = env.read_json_lines::<Payment>(&args.input);
    let counts = payments
        .assign_timestamps(|p| p.ts, BoundedOutOfOrderness::new(Duration::from_secs(2)))
        .filter(|p| p.status == Status::Fail)
        .key_by(|p| p.user_id)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
        .allowed_lateness(Duration::from_secs(5))
        .side_output_late_data(&late)
        .aggregate(Count);
    let rows = counts.map(|w| FailsPerMinute {
        user_id: w.key,
        window_start: w.window.start,
        window_end: w.window.end,
        fails: w.value,
    });
    let windows = rows.count();
    rows.write_json_lines(&args.output);
    let late_count = counts.side_output(&late).count();
    counts.side_output(&late).write_json_lines(&args.late_output);
    let bad = payments.bad_records();
    let bad_count = bad.count();
    bad.write_json_lines(&args.bad_output);

    let result = env.execute("fails-per-minute")?;
    println!(
        "fails-per-minute: {} window results -> {}; {} late payments -> {}; {} malformed lines -> {}; {:.2}s at parallelism {}",
        windows.get(),
        args.output.display(),
        late_count.get(),
        args.late_output.display(),
        bad_count.get(),
        args.bad_output.display(),
        result.duration.as_secs_f64(),
        env.config().parallelism,
    );
    Ok(())
}
