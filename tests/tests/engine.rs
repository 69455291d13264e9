//! The engine end to end through the DSL: parallel results, backpressure behind a stuck sink,
//! failures that name their operator, barriers through shuffles, and malformed input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_dsl::prelude::*;
use floe_dsl::JobConfig;
use floe_runtime::metrics::operators;
use floe_runtime::{downcast_batch, Batch, CheckpointBarrier, Operator, OperatorContext, Output};
use floe_testkit::{wait_for, wait_until, Gate, GatePass, DEADLINE};

#[test]
fn keyed_counts_are_exact_at_parallelism_1_2_3() {
    for p in 1..=3 {
        let env = Env::local(p);
        let totals = env
            .generate(30_000, |i| (i % 97, 1u64))
            .key_by(|e| e.0)
            .reduce(|a, b| (a.0, a.1 + b.1))
            .collect();
        env.execute("counts").unwrap();
        let mut last = std::collections::BTreeMap::new();
        for (k, n) in totals.take() {
            let e = last.entry(k).or_insert(0);
            assert!(n > *e, "per-key order: counts only grow");
            *e = n;
        }
        assert_eq!(last.len(), 97);
        for (k, n) in last {
            assert_eq!(
                n,
                30_000 / 97 + u64::from(k < 30_000 % 97),
                "key {k} at parallelism {p}"
            );
        }
    }
}

/// A sink the test holds shut, recording how many records were in flight at each batch.
struct GatedSink {
    pass: GatePass,
    produced: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
}

impl Operator for GatedSink {
    fn process_batch(
        &mut self,
        _: usize,
        batch: Batch,
        _: &mut OperatorContext,
        _: &mut dyn Output,
    ) -> floe_runtime::Result<()> {
        let records = downcast_batch::<u64>(batch)?;
        self.pass.pass();
        let in_flight = self.produced.load(Ordering::SeqCst) - self.consumed.load(Ordering::SeqCst);
        self.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        self.consumed.fetch_add(records.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_stuck_sink_bounds_memory_and_loses_nothing() {
    let (batch, capacity, n) = (16usize, 2usize, 20_000u64);
    let job = format!("backpressure-{}", std::process::id());
    let env = Env::with_config(JobConfig {
        parallelism: 1,
        batch_size: batch,
        channel_capacity: capacity,
        chaining: false,
        ..JobConfig::default()
    });
    let produced = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let p = produced.clone();
    let stream = env
        .generate(n, move |i| {
            p.fetch_add(1, Ordering::SeqCst);
            i
        })
        .name("gen");
    let gate = Gate::closed();
    let (c, m, p, pass) = (consumed.clone(), max_in_flight.clone(), produced.clone(), gate.pass());
    stream.map(|x| x).add_sink("stuck", move |_| {
        Box::new(GatedSink {
            pass: pass.clone(),
            produced: p.clone(),
            consumed: c.clone(),
            max_in_flight: m.clone(),
        })
    });
    let handle = env.execute_async(&job).unwrap();
    // In flight at most: the source's batch, the map's output buffer, two channels of
    // `capacity` batches, and the batch being consumed.
    let bound = (batch * (2 * capacity + 3)) as u64;

    // The sink is stuck on its first batch: the source fills what lies between and waits.
    gate.wait_until_blocked(1, DEADLINE);
    wait_for("the source to be held back", DEADLINE, || {
        let gen: Vec<_> = operators()
            .into_iter()
            .filter(|f| f.job == job && f.operator == "gen")
            .collect();
        (gen.len() == 1 && gen[0].backpressure > 0.5).then_some(())
    });
    let held = produced.load(Ordering::SeqCst);
    assert!(
        (batch * capacity) as u64 <= held && held <= bound,
        "{held} records produced while the sink was stuck, bound {bound}"
    );

    gate.open();
    handle.join().unwrap();
    assert_eq!(consumed.load(Ordering::SeqCst), n, "nothing lost");
    let max = max_in_flight.load(Ordering::SeqCst);
    assert!(max <= bound, "{max} records in flight, bound {bound}");
}

#[test]
fn failing_function_names_operator_and_subtask() {
    let env = Env::local(2);
    env.generate(10_000, |i| i)
        .map(|i| {
            assert!(i != 4_321, "bad record {i}");
            i
        })
        .name("explode")
        .count();
    let err = env.execute("fails").unwrap_err().to_string();
    assert!(err.contains("operator `explode`"), "{err}");
    assert!(err.contains("subtask 2/2") || err.contains("subtask 1/2"), "{err}");
    assert!(err.contains("bad record 4321"), "{err}");

    let env = Env::local(1);
    env.from_collection(vec![1, 2, 3])
        .process(
            |v: i32, _: &mut ProcessContext<'_>, out: &mut Collector<i32>| -> Result<(), UserError> {
                if v == 2 {
                    return Err("two is not allowed".into());
                }
                out.collect(v);
                Ok(())
            },
        )
        .name("no-twos")
        .count();
    let err = env.execute("fails").unwrap_err().to_string();
    assert!(
        err.contains("operator `no-twos` (subtask 1/1)") && err.contains("two is not allowed"),
        "{err}"
    );
}

/// Records the checkpoint barriers that reach it.
struct BarrierSink {
    seen: Arc<Mutex<Vec<(usize, u64)>>>,
    index: usize,
}

impl Operator for BarrierSink {
    fn process_batch(
        &mut self,
        _: usize,
        _: Batch,
        _: &mut OperatorContext,
        _: &mut dyn Output,
    ) -> floe_runtime::Result<()> {
        Ok(())
    }

    fn snapshot_state(
        &mut self,
        barrier: &CheckpointBarrier,
        _: &mut OperatorContext,
    ) -> floe_runtime::Result<floe_checkpoints::StateSnapshot> {
        self.seen.lock().unwrap().push((self.index, barrier.id));
        Ok(Default::default())
    }
}

#[test]
fn barriers_cross_shuffles_once_per_subtask_in_order() {
    let env = Env::local(3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    env.generate_with_rate(None, 20_000.0, |i| i)
        .key_by(|i| i % 10)
        .reduce(|a, b| a + b)
        .add_sink("barriers", move |info| {
            Box::new(BarrierSink {
                seen: s.clone(),
                index: info.subtask_index,
            })
        });
    let job = env.execute_async("barriers").unwrap();
    let first = job.trigger_checkpoint();
    let second = job.trigger_checkpoint();
    wait_until("both barriers at the three sink subtasks", DEADLINE, || {
        seen.lock().unwrap().len() >= 6
    });
    job.stop();
    job.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    for sub in 0..3 {
        let ids: Vec<u64> = seen.iter().filter(|(i, _)| *i == sub).map(|(_, id)| *id).collect();
        assert_eq!(ids, vec![first, second], "subtask {sub}");
    }
}

#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
struct Reading {
    sensor: String,
    value: f64,
}

#[test]
fn malformed_lines_go_to_bad_records_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.jsonl");
    let mut text = String::new();
    let mut expected_bad = Vec::new();
    for i in 1..=2_000u64 {
        if i % 97 == 0 {
            text.push_str("{\"sensor\": \"s\", \"value\": \"not a number\"}\n");
            expected_bad.push(i);
        } else if i % 101 == 0 {
            text.push_str("{truncated\n");
            expected_bad.push(i);
        } else {
            text.push_str(&format!("{{\"sensor\": \"s{}\", \"value\": {i}}}\n", i % 5));
        }
    }
    std::fs::write(&path, text).unwrap();
    for p in 1..=2 {
        let env = Env::local(p);
        let readings = env.read_json_lines::<Reading>(&path);
        let good = readings.map(|r| r.value as u64).collect();
        let bad = readings.bad_records().collect();
        env.execute("bad-input").unwrap();
        let mut good = good.take();
        good.sort();
        let expected_good: Vec<u64> = (1..=2_000).filter(|i| !expected_bad.contains(i)).collect();
        assert_eq!(good, expected_good);
        let mut bad = bad.take();
        bad.sort_by_key(|b| b.line);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), expected_bad);
        assert!(bad
            .iter()
            .all(|b| b.source.ends_with("readings.jsonl") && !b.error.is_empty()));
        assert_eq!(bad[1].raw, "{truncated");
    }

    let options = floe_dsl::EnvOptions {
        fail_on_bad_input: true,
        parallelism: Some(1),
        ..Default::default()
    };
    let env = Env::from_options(&options).unwrap();
    env.read_json_lines::<Reading>(&path).count();
    let err = env.execute("fail-fast").unwrap_err().to_string();
    assert!(err.contains("readings.jsonl:97"), "{err}");
}

#[test]
fn bad_configuration_fails_before_the_job_starts() {
    let env = Env::local(1);
    env.from_collection(vec![1i64])
        .assign_timestamps(|t| *t, BoundedOutOfOrderness::monotonous())
        .key_by(|_| 0u8)
        .window(TumblingEventTimeWindows::of(Duration::ZERO))
        .aggregate(Count)
        .count();
    let err = env.execute("zero-window").unwrap_err().to_string();
    assert!(err.starts_with("invalid job:"), "{err}");

    let env = Env::local(1);
    env.from_collection(vec![1]).count();
    let missing = env.read_json_lines::<Reading>("/nonexistent/floe/input.jsonl");
    missing.count();
    let err = env.execute("missing-file").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/floe/input.jsonl"), "{err}");
}

#[test]
fn event_time_window_without_timestamps_is_a_clear_error() {
    let env = Env::local(1);
    env.from_collection(vec![1u32, 2])
        .key_by(|v| *v)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
        .aggregate(Count)
        .count();
    let err = env.execute("no-timestamps").unwrap_err().to_string();
    assert!(err.contains("assign_timestamps"), "{err}");
}

#[test]
fn chaining_off_gives_the_same_results() {
    let run = |chaining: bool| {
        let env = Env::with_config(JobConfig {
            parallelism: 2,
            chaining,
            ..JobConfig::default()
        });
        let out = env
            .generate(20_000, |i| (i % 13, i as i64))
            .assign_timestamps(|e| e.1, BoundedOutOfOrderness::monotonous())
            .filter(|e| e.1 % 3 != 0)
            .key_by(|e| e.0)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(1_000)))
            .aggregate(Count)
            .map(|w| (w.key, w.window.start, w.value))
            .collect();
        env.execute("chaining").unwrap();
        let mut v = out.take();
        v.sort();
        v
    };
    let chained = run(true);
    assert!(!chained.is_empty());
    assert_eq!(chained, run(false));
}

#[test]
fn processing_time_windows_fire_while_the_job_runs() {
    let env = Env::local(2);
    // The test holds the source after its first 300 records (of 600): a window must fire
    // while the job still runs, not only when its input ends.
    let gate = Gate::closed();
    let pass = gate.pass();
    let windows = env
        .generate_with_rate(Some(600), 1_500.0, move |i| {
            if i >= 300 {
                pass.pass();
            }
            i
        })
        .key_by(|i| i % 3)
        .window(TumblingProcessingTimeWindows::of(Duration::from_millis(50)))
        .aggregate(Count)
        .collect();
    let job = env.execute_async("processing-time").unwrap();
    wait_until("a window to fire while the source is held", DEADLINE, || {
        !windows.is_empty()
    });
    gate.open();
    job.join().unwrap();
    let windows = windows.take();
    assert_eq!(
        windows.iter().map(|w| w.value).sum::<u64>(),
        600,
        "every record counted once"
    );
    // The records let through after the first window fired fall into later windows.
    let starts: std::collections::BTreeSet<i64> = windows.iter().map(|w| w.window.start).collect();
    assert!(starts.len() >= 2, "windows: {starts:?}");
    assert!(windows.iter().all(|w| w.window.end - w.window.start == 50));
}
