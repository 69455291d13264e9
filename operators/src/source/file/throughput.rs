//! Throughput of the file sources on a generated file, one subtask on one core:
//! `cargo test --release -p floe-operators --lib source::file::throughput -- --ignored --nocapture`.

use super::*;
use crate::source::test_support::VecOutput;
use floe_runtime::{ManualClock, OperatorContext, TaskInfo};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Payment {
    event_id: u64,
    user_id: u32,
    status: String,
    amount: f64,
    ts: i64,
}

const RECORDS: u64 = 2_000_000;

fn payment(i: u64) -> Payment {
    Payment {
        event_id: i,
        user_id: (i.wrapping_mul(2_654_435_761) % 100_000) as u32,
        status: if i.is_multiple_of(5) { "FAIL" } else { "OK" }.into(),
        amount: (i % 10_000) as f64 / 100.0,
        ts: 1_767_225_600_000 + i as i64,
    }
}

/// Reads `path` to its end as one subtask; returns (records, seconds).
fn read(path: &std::path::Path, format: LineFormat) -> (u64, f64) {
    let mut info = TaskInfo::new("bench", "file", 0, 1, 128);
    info.batch_size = 1024;
    let mut ctx = OperatorContext::new(info, Arc::new(ManualClock::new(0)));
    let mut source = FileSource::<Payment>::new(vec![path.to_path_buf()], format, FileSourceOptions::default());
    let started = Instant::now();
    source.open(&mut ctx).unwrap();
    let mut out = VecOutput::default();
    let mut n = 0u64;
    loop {
        let status = source.poll_batch(&mut ctx, &mut out).unwrap();
        n += out.values::<Payment>().len() as u64;
        if status == SourceStatus::Finished {
            break;
        }
    }
    (n, started.elapsed().as_secs_f64())
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn file_source_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("payments.jsonl");
    let csv_path = dir.path().join("payments.csv");
    let mut j = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
    let mut c = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
    writeln!(c, "event_id,user_id,status,amount,ts").unwrap();
    for i in 0..RECORDS {
        let p = payment(i);
        serde_json::to_writer(&mut j, &p).unwrap();
        j.write_all(b"\n").unwrap();
        writeln!(c, "{},{},{},{},{}", p.event_id, p.user_id, p.status, p.amount, p.ts).unwrap();
    }
    drop((j, c));
    let csv = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    for (name, path, format) in [("json lines", &jsonl, LineFormat::JsonLines), ("csv", &csv_path, csv)] {
        let bytes = std::fs::metadata(path).unwrap().len();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let (n, secs) = read(path, format.clone());
            assert_eq!(n, RECORDS);
            best = best.min(secs);
        }
        println!(
            "{name}: {RECORDS} records ({} MB) in {best:.3} s: {:.2} M records/s, {:.0} MB/s (best of 3)",
            bytes >> 20,
            RECORDS as f64 / best / 1e6,
            bytes as f64 / best / 1e6
        );
    }
}
