//! Memory of the file sources on records far longer than the limit: a 10 MB line with no
//! line break, and a 10 MB quoted CSV field, each read with the default 1 MiB limit. The
//! process's peak resident memory (Linux `VmHWM`, reset through `/proc/self/clear_refs`)
//! grows by a few MB at most while reading, not by the record's size. One test in this
//! binary, so that nothing else runs beside the measurement.

use std::sync::Arc;

use floe_operators::source::file::{BadRecord, FileSource, FileSourceOptions, LineFormat};
use floe_runtime::{
    downcast_batch, Batch, ManualClock, OperatorContext, Output, Result, SourceFunction, SourceStatus, TaskInfo,
    Timestamp,
};

/// Peak resident memory of this process since the last [`reset_peak`], in bytes.
fn peak() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

/// Sets the peak to the memory resident now.
fn reset_peak() -> usize {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak through /proc/self/clear_refs");
    peak()
}

#[derive(Default)]
struct Collect {
    good: usize,
    bad: Vec<BadRecord>,
}

impl Output for Collect {
    fn emit(&mut self, batch: Batch) -> Result<()> {
        self.good += downcast_batch::<serde_json::Value>(batch)?.len();
        Ok(())
    }
    fn emit_side(&mut self, _tag: u64, batch: Batch) -> Result<()> {
        self.bad
            .extend(downcast_batch::<BadRecord>(batch)?.into_iter().map(|r| r.value));
        Ok(())
    }
    fn emit_watermark(&mut self, _: Timestamp) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Reads `path` to its end; returns what came out and how much the peak resident memory
/// grew while reading.
fn read(path: &std::path::Path, format: LineFormat) -> (Collect, usize) {
    let options = FileSourceOptions {
        errors_tag: Some(1),
        ..FileSourceOptions::default()
    };
    let mut source = FileSource::<serde_json::Value>::new(vec![path.to_path_buf()], format, options);
    let mut ctx = OperatorContext::new(TaskInfo::new("mem", "file", 0, 1, 128), Arc::new(ManualClock::new(0)));
    let mut out = Collect::default();
    let base = reset_peak();
    source.open(&mut ctx).unwrap();
    while source.poll_batch(&mut ctx, &mut out).unwrap() != SourceStatus::Finished {}
    let grown = peak().saturating_sub(base);
    (out, grown)
}

const TEN_MB: usize = 10 << 20;
/// The buffer (256 KiB), a record up to the limit (1 MiB) and its parse, with room to spare.
const BOUND: usize = 5 << 20;

#[test]
fn records_longer_than_the_limit_are_never_held_whole() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("long.jsonl");
    let mut text = b"{\"a\":1}\n".to_vec();
    text.resize(text.len() + TEN_MB, b'x'); // no line break to the end
    std::fs::write(&jsonl, &text).unwrap();
    let csv = dir.path().join("long.csv");
    let mut text = b"a,b\n1,\"".to_vec();
    text.extend(std::iter::repeat_n(*b"xxxxxxx\n", TEN_MB / 8).flatten());
    text.extend_from_slice(b"\"\n2,3\n");
    std::fs::write(&csv, &text).unwrap();
    drop(text);

    // The measurement sees a record held whole: it breaks the bound. (Not by exactly 10 MB:
    // other threads of the test binary free memory after the reset, lowering the base.)
    let base = reset_peak();
    let held = std::hint::black_box(vec![1u8; TEN_MB]);
    assert!(
        peak() - base > BOUND,
        "a 10 MB buffer raised the peak by only {}",
        peak() - base
    );
    drop(held);

    let (out, grown) = read(&jsonl, LineFormat::JsonLines);
    assert_eq!((out.good, out.bad.len()), (1, 1));
    assert!(
        out.bad[0].error.contains("record of 10485760 bytes"),
        "{}",
        out.bad[0].error
    );
    assert!(
        grown < BOUND,
        "reading a 10 MB line raised the peak memory by {grown} bytes"
    );

    let format = LineFormat::Csv {
        has_header: true,
        delimiter: b',',
    };
    let (out, grown) = read(&csv, format);
    assert_eq!((out.good, out.bad.len()), (1, 1), "{:?}", out.bad);
    assert_eq!((out.bad[0].line, out.bad[0].offset), (2, 4));
    assert!(
        grown < BOUND,
        "reading a 10 MB CSV field raised the peak memory by {grown} bytes"
    );
}
