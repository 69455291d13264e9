//! Events per key per 10 seconds of event time, over a deterministic generated stream,
//! written exactly once: the job the crash tests kill and restart.
//!
//! ```text
//! counts-per-key --events 1000000 --output out/ --checkpoint-dir chk/ --checkpoint-interval-ms 100
//! counts-per-key --format parquet --output out/ ...
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use floe_dsl::prelude::*;
use floe_jobs::payments::mix;
use serde::{Deserialize, Serialize};

/// The format of the committed part files.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// One JSON object per line (`.jsonl`)
    Jsonl,
    /// Parquet with columns key, window_start, count (`.parquet`)
    Parquet,
}

#[derive(Parser, Debug)]
#[command(
    name = "counts-per-key",
    about = "Events per key per 10 s of event time, exactly once"
)]
struct Args {
    #[command(flatten)]
    floe: EnvOptions,
    /// Events to generate (event i has time i ms)
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Distinct keys
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// Events per second in total (default: as fast as possible)
    #[arg(long)]
    rate: Option<f64>,
    /// Directory of the committed part files
    #[arg(long, default_value = "target/floe-demo/counts-per-key")]
    output: PathBuf,
    /// Format of the part files
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    key: u64,
    window_start: i64,
    count: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(floe_dsl::job::args()); // run, graph, submit or worker
    init_logging();
    let env = Env::from_options(&args.floe)?;
    let keys = args.keys.max(1);
    let event = move |i: u64| (mix(i) % keys, i as i64);
    let events = match args.rate {
        Some(rate) => env.generate_with_rate(Some(args.events), rate, event),
        None => env.generate(args.events, event),
    };
    let rows = events
        .assign_timestamps(|e| e.1, BoundedOutOfOrderness::monotonous())
        .key_by(|e| e.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate(Count)
        .map(|w| Row {
            key: w.key,
            window_start: w.window.start,
            count: w.value,
        });
    match args.format {
        Format::Jsonl => rows.write_json_lines_exactly_once(&args.output),
        Format::Parquet => rows.write_parquet_exactly_once(&args.output),
    };
    let result = env.execute("counts-per-key")?;
    println!(
        "counts-per-key: done in {:.2}s; restored from checkpoint {:?}; last checkpoint {:?}",
        result.duration.as_secs_f64(),
        result.restored_from,
        result.last_checkpoint
    );
    Ok(())
}
