//! Operator, checkpoint and latency metrics of a real job, read from the process's registry
//! and over HTTP while the job runs and after it ends.

use std::io::{Read, Write};

use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_runtime::metrics::server::MetricsServer;
use floe_runtime::metrics::{operators, OperatorFigures, Registry, SINK_LATENCY_METRIC};
use floe_testkit::{wait_for, Gate, DEADLINE};

/// Now, in ms since the epoch.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ours(job: &str, operator: &str) -> Vec<OperatorFigures> {
    operators()
        .into_iter()
        .filter(|f| f.job == job && f.operator == operator)
        .collect()
}

fn scrape(server: &MetricsServer) -> String {
    let mut c = std::net::TcpStream::connect(server.addr()).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn sum(job: &str, name: &str, operator: &str) -> f64 {
    Registry::global().sum(name, &[("job", job), ("operator", operator)]) as f64
}

/// gen → timestamps → double ═key_by═> reduce → gated → collect, at parallelism 2. The test
/// holds the tail shut, so the head is certainly blocked and its backpressure shows it; it
/// lets records through a few at a time and the tail's watermark moves; opened, every
/// operator counts exactly the records it saw and every record reaching the sink has its
/// latency.
#[test]
fn a_job_held_at_its_tail_reports_counts_backpressure_watermarks_and_latency() {
    let job = format!("metrics-e2e-{}", std::process::id());
    let n: u64 = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    // Event time of record `i`: base + i, in the past, so the watermark range is known.
    let base = wall_clock_ms() - n as i64;
    let env = Env::with_config(JobConfig {
        parallelism: 2,
        batch_size: 16,
        channel_capacity: 2,
        checkpoint_dir: Some(tmp.path().join("chk")),
        checkpoint_interval_ms: 300,
        ..JobConfig::default()
    });
    let gate = Gate::closed();
    let pass = gate.pass();
    let out = env
        .generate(n, |i| i)
        .name("gen")
        .assign_timestamps(move |i| base + *i as i64, BoundedOutOfOrderness::monotonous())
        .map(|i| i * 2)
        .name("double")
        .key_by(|i| i % 16)
        .reduce(|_, b| *b)
        .map(move |i| {
            pass.pass(); // held here until the test lets the record through
            i
        })
        .name("gated")
        .collect();
    let server = MetricsServer::start("127.0.0.1:0", Registry::global().clone()).unwrap();
    let handle = env.execute_async(&job).unwrap();

    // Shut: every subtask of the head ends up blocked on a full channel, for good.
    wait_for("backpressure above 0.5 at both subtasks of the head", DEADLINE, || {
        let double = ours(&job, "double");
        (double.len() == 2 && double.iter().all(|f| f.backpressure > 0.5)).then_some(())
    });
    let text = scrape(&server);
    for series in [
        "floe_records_in_total{job=\"",
        "floe_backpressure_ratio{job=\"",
        "floe_output_blocked_seconds_total{job=\"",
        "floe_watermark_ms{job=\"",
        "floe_watermark_lag_ms{job=\"",
    ] {
        assert!(
            text.contains(&format!("{series}{job}\",operator=\"")),
            "no {series} in\n{text}"
        );
    }

    // Let through a few records at a time (never all: the last watermark, MAX, would follow
    // them); each time the tail has taken them, look at its watermark.
    let step = 64;
    let mut released = 0;
    let mut watermarks: Vec<i64> = Vec::new();
    while watermarks.len() < 2 {
        assert!(
            released + step < n,
            "{released} records let through and the watermark did not advance: {watermarks:?}"
        );
        gate.release(step);
        released += step;
        gate.wait_until_blocked(1, DEADLINE);
        if let Some(w) = ours(&job, "gated").iter().filter_map(|f| f.watermark).min() {
            if watermarks.last().is_none_or(|last| w > *last) {
                watermarks.push(w);
            }
        }
    }
    assert!(
        watermarks.iter().all(|w| *w >= base && *w < base + n as i64),
        "{watermarks:?}"
    );

    gate.open();
    let result = handle.join().unwrap();
    assert!(ours(&job, "double").is_empty(), "ended subtasks leave the live list");
    assert_eq!(out.len() as u64, n);

    // Exact counts per operator, summed over both subtasks.
    assert_eq!(sum(&job, "floe_records_out_total", "gen"), n as f64);
    for op in ["double", "gated"] {
        assert_eq!(sum(&job, "floe_records_in_total", op), n as f64, "{op} in");
        assert_eq!(sum(&job, "floe_records_out_total", op), n as f64, "{op} out");
    }
    let r = Registry::global();
    for subtask in ["0", "1"] {
        let labels = [("job", job.as_str()), ("operator", "double"), ("subtask", subtask)];
        assert!(r.value("floe_output_blocked_seconds_total", &labels).unwrap() > 0.5);
    }

    // The latency of every record at the sink.
    let sink = [("job", job.as_str()), ("operator", "collect")];
    assert_eq!(r.value(SINK_LATENCY_METRIC, &sink), Some(n as f64));
    let text = scrape(&server);
    let count_line = format!("{SINK_LATENCY_METRIC}_count{{job=\"{job}\",operator=\"collect\"}} {n}\n");
    assert!(text.contains(&count_line), "{text}");
    // Every record reached the sink after its event time and before now.
    let elapsed = (wall_clock_ms() - base) as f64;
    for q in ["0.5", "0.99", "0.999"] {
        let prefix = format!("{SINK_LATENCY_METRIC}{{job=\"{job}\",operator=\"collect\",quantile=\"{q}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix));
        let v: f64 = line.and_then(|l| l[prefix.len()..].parse().ok()).unwrap_or(-1.0);
        assert!(
            (0.0..=elapsed).contains(&v),
            "quantile {q}: {v} (elapsed {elapsed} ms)\n{text}"
        );
    }

    // Checkpoints.
    let job_label = [("job", job.as_str())];
    let completed = r.value("floe_checkpoints_completed_total", &job_label).unwrap();
    assert!(completed >= 1.0, "{completed}");
    assert_eq!(
        r.value("floe_last_checkpoint_id", &job_label),
        result.last_checkpoint.map(|id| id as f64)
    );
    assert!(r.value("floe_checkpoint_size_bytes", &job_label).unwrap() > 0.0);
}

/// A second run of a job of the same name in the same process counts from zero.
#[test]
fn a_rerun_of_a_job_counts_from_zero() {
    let job = format!("metrics-rerun-{}", std::process::id());
    for _ in 0..2 {
        let env = Env::local(1);
        let out = env.generate(1_000, |i| i).map(|i| i + 1).name("inc").collect();
        env.execute(&job).unwrap();
        assert_eq!(out.len(), 1_000);
        assert_eq!(sum(&job, "floe_records_in_total", "inc"), 1_000.0);
    }
}
