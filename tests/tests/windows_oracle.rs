//! Windowed aggregates over random out-of-order streams equal a naive oracle, at parallelism
//! 1, 2 and 3.

use std::time::Duration;

use floe_dsl::prelude::*;
use floe_tests::{session_oracle, sliding_oracle, WindowTotals};
use proptest::prelude::*;

const MAX_DISORDER: i64 = 50;

/// Events (key, ts, value) whose timestamps go back by at most MAX_DISORDER.
fn streams() -> impl Strategy<Value = Vec<(u32, i64, i64)>> {
    prop::collection::vec((0u32..12, 0i64..40, -MAX_DISORDER..=0, -100i64..100), 0..300).prop_map(|raw| {
        let mut now = 1_000i64;
        raw.into_iter()
            .map(|(key, step, back, value)| {
                now += step;
                (key, (now + back).max(0), value)
            })
            .collect()
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

fn run(events: &[(u32, i64, i64)], kind: Kind, parallelism: usize) -> WindowTotals {
    let env = Env::local(parallelism);
    let keyed = env
        .from_collection(events.to_vec())
        .assign_timestamps(
            |e| e.1,
            BoundedOutOfOrderness::new(Duration::from_millis(MAX_DISORDER as u64)),
        )
        .key_by(|e| e.0);
    let ms = |v: i64| Duration::from_millis(v as u64);
    let windowed = match kind {
        Kind::Tumbling(size) => keyed.window(TumblingEventTimeWindows::of(ms(size))),
        Kind::Sliding(size, slide) => keyed.window(SlidingEventTimeWindows::of(ms(size), ms(slide))),
        Kind::Session(gap) => keyed.window(EventTimeSessionWindows::with_gap(ms(gap))),
    };
    let counts = windowed.aggregate(Count).collect();
    let sums = windowed.aggregate(Sum::of(|e: &(u32, i64, i64)| e.2)).collect();
    env.execute("oracle").expect("job runs");
    let mut out = WindowTotals::new();
    for w in counts.take() {
        let prev = out.insert((w.key, w.window.start, w.window.end), (w.value, 0));
        assert!(prev.is_none(), "window {w:?} fired twice without lateness");
    }
    for w in sums.take() {
        out.get_mut(&(w.key, w.window.start, w.window.end))
            .expect("sum without count")
            .1 = w.value;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_matches_oracle(events in streams(), size in 1i64..200, p in 1usize..=3) {
        prop_assert_eq!(run(&events, Kind::Tumbling(size), p), sliding_oracle(&events, size, size));
    }

    #[test]
    fn sliding_matches_oracle(events in streams(), slide in 1i64..60, factor in 1i64..4, p in 1usize..=3) {
        let size = slide * factor;
        prop_assert_eq!(run(&events, Kind::Sliding(size, slide), p), sliding_oracle(&events, size, slide));
    }

    #[test]
    fn sessions_match_oracle(events in streams(), gap in 1i64..80, p in 1usize..=3) {
        prop_assert_eq!(run(&events, Kind::Session(gap), p), session_oracle(&events, gap));
    }
}

#[test]
fn same_result_at_every_parallelism() {
    let events: Vec<(u32, i64, i64)> = (0..5_000i64)
        .map(|i| ((i * 7919 % 101) as u32, i * 3 - (i % 5) * 7, i % 13))
        .collect();
    let expected = sliding_oracle(&events, 100, 100);
    for p in 1..=3 {
        assert_eq!(run(&events, Kind::Tumbling(100), p), expected, "parallelism {p}");
    }
}
