//! Window operator tests against hand-computed results, driven by the harness (no threads,
//! no sleeps).

use std::sync::Arc;
use std::time::Duration;

use floe_runtime::harness::OperatorHarness;
use floe_runtime::{Record, TaskInfo, UserError, MAX_WATERMARK};

use super::*;
use crate::aggregate::Count;
use crate::collector::Collector;

type Ev = (char, i64);

fn key() -> Arc<dyn Fn(&Ev) -> String + Send + Sync> {
    Arc::new(|e: &Ev| e.0.to_string())
}

fn harness(op: Box<dyn Operator>) -> OperatorHarness {
    OperatorHarness::new(op, TaskInfo::new("t", "window", 0, 1, 128), 0).unwrap()
}

fn ev(k: char, ts: i64) -> Record<Ev> {
    Record::new((k, ts), ts)
}

fn counts(h: &mut OperatorHarness) -> Vec<(String, i64, i64, u64)> {
    h.take_values::<Windowed<String, u64>>()
        .unwrap()
        .into_iter()
        .map(|w| (w.key, w.window.start, w.window.end, w.value))
        .collect()
}

fn count_op(assigner: impl WindowAssigner, cfg: WindowConfig) -> Box<dyn Operator> {
    aggregate_operator(key(), Arc::new(assigner), Arc::new(Count), cfg)
}

fn s(k: &str) -> String {
    k.to_string()
}

#[test]
fn tumbling_event_time_fires_when_the_watermark_passes_the_end() {
    let mut h = harness(count_op(
        TumblingEventTimeWindows::of(Duration::from_millis(10)),
        WindowConfig::default(),
    ));
    h.process(vec![ev('a', 1), ev('a', 9), ev('b', 3), ev('a', 10), ev('a', -1)])
        .unwrap();
    h.watermark(8).unwrap();
    // -1 belongs to [-10, 0): negative timestamps are floored, not truncated.
    assert_eq!(counts(&mut h), vec![(s("a"), -10, 0, 1)]);
    h.watermark(9).unwrap();
    let mut fired = counts(&mut h);
    fired.sort();
    assert_eq!(fired, vec![(s("a"), 0, 10, 2), (s("b"), 0, 10, 1)]);
    h.watermark(MAX_WATERMARK).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 10, 20, 1)]);
    assert_eq!(h.take_watermarks(), vec![8, 9, MAX_WATERMARK]);
}

#[test]
fn results_carry_the_window_end_as_timestamp() {
    let mut h = harness(count_op(
        TumblingEventTimeWindows::of(Duration::from_millis(10)),
        WindowConfig::default(),
    ));
    h.process(vec![ev('a', 3)]).unwrap();
    h.watermark(100).unwrap();
    let out = h.take_output::<Windowed<String, u64>>().unwrap();
    assert_eq!(out[0].timestamp, 9);
}

#[test]
fn sliding_windows_count_each_record_in_every_window() {
    let assigner = SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5));
    let mut h = harness(count_op(assigner, WindowConfig::default()));
    h.process(vec![ev('a', 2), ev('a', 7), ev('a', 12)]).unwrap();
    h.watermark(MAX_WATERMARK).unwrap();
    let mut fired = counts(&mut h);
    fired.sort_by_key(|w| w.1);
    assert_eq!(
        fired,
        vec![
            (s("a"), -5, 5, 1),
            (s("a"), 0, 10, 2),
            (s("a"), 5, 15, 2),
            (s("a"), 10, 20, 1)
        ]
    );
}

#[test]
fn allowed_lateness_refires_and_later_records_go_to_the_side_output() {
    let cfg = WindowConfig {
        allowed_lateness_ms: 5,
        late_tag: Some(77),
    };
    let mut h = harness(count_op(TumblingEventTimeWindows::of(Duration::from_millis(10)), cfg));
    h.process(vec![ev('a', 1)]).unwrap();
    h.watermark(10).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 0, 10, 1)]);
    // Within lateness (cleanup at 9 + 5 = 14): fires again with the updated count, at once.
    h.process(vec![ev('a', 2), ev('b', 4)]).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 0, 10, 2), (s("b"), 0, 10, 1)]);
    h.watermark(14).unwrap();
    // Beyond lateness: the state is gone; the record goes to the side output.
    h.process(vec![ev('a', 3), ev('a', 20)]).unwrap();
    assert!(counts(&mut h).is_empty());
    assert_eq!(h.take_side::<Ev>(77).unwrap(), vec![ev('a', 3)]);
    h.watermark(MAX_WATERMARK).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 20, 30, 1)]);
}

#[test]
fn late_records_without_a_tag_are_dropped() {
    let mut h = harness(count_op(
        TumblingEventTimeWindows::of(Duration::from_millis(10)),
        WindowConfig::default(),
    ));
    h.watermark(50).unwrap();
    h.process(vec![ev('a', 1)]).unwrap();
    h.watermark(MAX_WATERMARK).unwrap();
    assert!(counts(&mut h).is_empty());
    assert!(h.take_side::<Ev>(77).unwrap().is_empty());
}

#[test]
fn sessions_merge_when_a_record_bridges_them() {
    let f = |k: &String, w: &TimeWindow, items: &[Ev], out: &mut Collector<String>| -> Result<(), UserError> {
        let ts: Vec<i64> = items.iter().map(|i| i.1).collect();
        out.collect(format!("{k} [{}, {}) {ts:?}", w.start, w.end));
        Ok(())
    };
    let assigner = Arc::new(EventTimeSessionWindows::with_gap(Duration::from_millis(10)));
    let mut h = harness(process_operator(
        key(),
        assigner.clone(),
        Box::new(f),
        WindowConfig::default(),
    ));
    h.process(vec![ev('a', 0), ev('a', 25), ev('b', 1)]).unwrap();
    h.process(vec![ev('a', 14)]).unwrap(); // [14, 24) touches [0, 10)? no: 10 < 14. It touches [25, 35)? 24 < 25: no.
    h.process(vec![ev('a', 12)]).unwrap(); // [12, 22) bridges [0,10)+[14,24)? [0,10) ends at 10 < 12: no; merges with [14,24).
    h.process(vec![ev('a', 8)]).unwrap(); // [8, 18) merges [0, 10) and [12, 24) into [0, 24), which touches... 24 < 25: no.
    h.watermark(MAX_WATERMARK).unwrap();
    let mut out = h.take_values::<String>().unwrap();
    out.sort();
    assert_eq!(
        out,
        vec!["a [0, 24) [0, 14, 12, 8]", "a [25, 35) [25]", "b [1, 11) [1]"]
    );

    // The same with an incremental count: accumulators merge.
    let mut h = harness(aggregate_operator(
        key(),
        assigner,
        Arc::new(Count),
        WindowConfig::default(),
    ));
    h.process(vec![ev('a', 0), ev('a', 25), ev('a', 14), ev('a', 12), ev('a', 8)])
        .unwrap();
    h.process(vec![ev('a', 24)]).unwrap(); // [24, 34) touches both: one session [0, 35)
    h.watermark(MAX_WATERMARK).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 0, 35, 6)]);
}

#[test]
fn session_fires_once_its_gap_passed() {
    let assigner = EventTimeSessionWindows::with_gap(Duration::from_millis(10));
    let mut h = harness(count_op(assigner, WindowConfig::default()));
    h.process(vec![ev('a', 0), ev('a', 5)]).unwrap();
    h.watermark(13).unwrap();
    assert!(counts(&mut h).is_empty(), "session [0, 15) still open");
    h.watermark(14).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 0, 15, 2)]);
    h.watermark(MAX_WATERMARK).unwrap();
    assert!(counts(&mut h).is_empty(), "fires once");
}

#[test]
fn reduce_keeps_one_value_per_window() {
    let op = reduce_operator::<String, Ev>(
        key(),
        Arc::new(TumblingEventTimeWindows::of(Duration::from_millis(100))),
        Arc::new(|a: &Ev, b: &Ev| (a.0, a.1.max(b.1))),
        WindowConfig::default(),
    );
    let mut h = harness(op);
    h.process(vec![ev('x', 5), ev('x', 50), ev('x', 20)]).unwrap();
    h.watermark(MAX_WATERMARK).unwrap();
    let out = h.take_values::<Windowed<String, Ev>>().unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value, ('x', 50));
}

#[test]
fn processing_time_windows_follow_the_clock_and_fire_at_end_of_input() {
    let op = count_op(
        TumblingProcessingTimeWindows::of(Duration::from_millis(100)),
        WindowConfig::default(),
    );
    let mut h = OperatorHarness::new(op, TaskInfo::new("t", "window", 0, 1, 128), 1_000).unwrap();
    h.process(vec![Record::untimed(('a', 0i64)), Record::untimed(('a', 0i64))])
        .unwrap();
    h.set_processing_time(1_050).unwrap();
    h.process(vec![Record::untimed(('b', 0i64))]).unwrap();
    h.set_processing_time(1_098).unwrap();
    assert!(counts(&mut h).is_empty());
    h.set_processing_time(1_099).unwrap();
    let mut fired = counts(&mut h);
    fired.sort();
    assert_eq!(fired, vec![(s("a"), 1_000, 1_100, 2), (s("b"), 1_000, 1_100, 1)]);
    h.process(vec![Record::untimed(('a', 0i64))]).unwrap();
    h.finish().unwrap();
    assert_eq!(
        counts(&mut h),
        vec![(s("a"), 1_000, 1_100, 1)],
        "end of input fires open windows"
    );
}

#[test]
fn processing_time_sessions() {
    let op = count_op(
        ProcessingTimeSessionWindows::with_gap(Duration::from_millis(50)),
        WindowConfig::default(),
    );
    let mut h = OperatorHarness::new(op, TaskInfo::new("t", "window", 0, 1, 128), 0).unwrap();
    h.process(vec![Record::untimed(('a', 0i64))]).unwrap();
    h.set_processing_time(40).unwrap();
    h.process(vec![Record::untimed(('a', 0i64))]).unwrap(); // session now [0, 90)
    h.set_processing_time(60).unwrap();
    assert!(counts(&mut h).is_empty(), "the first session was extended");
    h.set_processing_time(89).unwrap();
    assert_eq!(counts(&mut h), vec![(s("a"), 0, 90, 2)]);
}

#[test]
fn records_without_timestamps_are_a_clear_error() {
    let mut h = harness(count_op(
        TumblingEventTimeWindows::of(Duration::from_millis(10)),
        WindowConfig::default(),
    ));
    let err = h.process(vec![Record::untimed(('a', 1i64))]).unwrap_err().to_string();
    assert!(err.contains("assign_timestamps"), "{err}");
}

#[test]
fn zero_sizes_fail_validation() {
    assert!(TumblingEventTimeWindows::of(Duration::ZERO)
        .validate()
        .unwrap_err()
        .contains("size"));
    assert!(SlidingEventTimeWindows::of(Duration::from_secs(1), Duration::ZERO)
        .validate()
        .unwrap_err()
        .contains("slide"));
    assert!(EventTimeSessionWindows::with_gap(Duration::ZERO)
        .validate()
        .unwrap_err()
        .contains("gap"));
    let offset = TumblingEventTimeWindows::of(Duration::from_secs(1)).with_offset(Duration::from_secs(2));
    assert!(offset.validate().unwrap_err().contains("offset"));
}

/// Runs the first half of a stream at parallelism 1, snapshots, and the rest at parallelism
/// 1, 2 and 3 from that snapshot (records routed by key group): the windows fire exactly as
/// in a run without the restore, timers included.
#[test]
fn snapshot_restores_windows_and_timers_at_any_parallelism() {
    use floe_checkpoints::{assign_key_group, subtask_for_key_group, KeyGroupRange, StateSnapshot};
    let keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    let events: Vec<Record<Ev>> = (0..200i64).map(|i| ev(keys[(i * 5 % 7) as usize], i * 3)).collect();
    let op = || {
        count_op(
            SlidingEventTimeWindows::of(Duration::from_millis(40), Duration::from_millis(20)),
            WindowConfig::default(),
        )
    };
    let run_all = |h: &mut OperatorHarness, evs: &[Record<Ev>]| {
        for chunk in evs.chunks(10) {
            h.process(chunk.to_vec()).unwrap();
            h.watermark(chunk.last().unwrap().timestamp - 5).unwrap();
        }
    };
    let mut whole = harness(op());
    run_all(&mut whole, &events);
    whole.watermark(MAX_WATERMARK).unwrap();
    let mut expected = counts(&mut whole);
    expected.sort();

    let mut first = harness(op());
    run_all(&mut first, &events[..100]);
    let before = counts(&mut first);
    let snapshot = first.snapshot(1).unwrap();
    let wm = events[99].timestamp - 5;
    for p in 1..=3 {
        let mut got = before.clone();
        for s in 0..p {
            let info = TaskInfo::new("t", "window", s, p, 128);
            let part = StateSnapshot::for_subtask(
                std::slice::from_ref(&snapshot),
                KeyGroupRange::for_subtask(128, p, s),
                s,
                p,
            );
            let mut h = OperatorHarness::restored(op(), info, 0, Some(part)).unwrap();
            h.watermark(wm).unwrap();
            let mine: Vec<Record<Ev>> = events[100..]
                .iter()
                .filter(|r| subtask_for_key_group(assign_key_group(&r.value.0.to_string(), 128), 128, p) == s)
                .cloned()
                .collect();
            run_all(&mut h, &mine);
            h.watermark(MAX_WATERMARK).unwrap();
            got.extend(counts(&mut h));
        }
        got.sort();
        assert_eq!(got, expected, "restored at parallelism {p}");
    }
}
