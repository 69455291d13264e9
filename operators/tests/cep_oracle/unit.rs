//! Unit tests of the CEP engine: compile errors, state serialization, the partial-match cap,
//! expiry, groups and the flagship fraud rule.

use std::time::Duration;

use floe_operators::cep::{AfterMatchSkipStrategy, CepError, Match, Nfa, NfaState, Pattern, TimedOut};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct E {
    kind: char,
    id: usize,
}

fn is(c: char) -> impl Fn(&E) -> bool + Send + Sync + 'static {
    move |e| e.kind == c
}

fn feed(nfa: &Nfa<E>, state: &mut NfaState<E>, kinds: &str, first_id: usize, ts0: i64) -> Vec<Match<E>> {
    let mut out = Vec::new();
    for (i, kind) in kinds.chars().enumerate() {
        let id = first_id + i;
        nfa.process(state, E { kind, id }, ts0 + i as i64, &mut out)
            .expect("process");
    }
    out
}

fn ids(m: &Match<E>) -> Vec<usize> {
    m.events().map(|e| e.id).collect()
}

fn compile_err(p: Pattern<E>) -> CepError {
    match Nfa::compile(p) {
        Ok(_) => panic!("pattern should not compile"),
        Err(e) => e,
    }
}

#[test]
fn compile_errors_are_reported() {
    let within = Duration::from_millis(10);
    let cases: Vec<(Pattern<E>, &str)> = vec![
        (Pattern::begin("a").followed_by("a"), "duplicate step name"),
        (Pattern::begin("a").not_followed_by("b"), "requires `within`"),
        (
            Pattern::begin("a").not_followed_by("b").optional().followed_by("c"),
            "cannot be quantified",
        ),
        (
            Pattern::begin("a").not_next("b").times(2).followed_by("c"),
            "cannot be quantified",
        ),
        (Pattern::begin("a").greedy().followed_by("b"), "variable number"),
        (Pattern::begin("a").one_or_more().greedy(), "last step"),
        (
            Pattern::begin("a").optional().not_followed_by("b").followed_by("c"),
            "optional step",
        ),
        (Pattern::begin("a").times(2).until(is('x')), "looping"),
        (Pattern::begin("a").consecutive(), "quantified step"),
        (Pattern::begin("a").times(0), "times(0)"),
        (Pattern::begin("a").times(2).one_or_more(), "already applied"),
        (Pattern::begin("a").times_range(3, 2), "invalid range"),
        (
            Pattern::begin_with_skip("a", AfterMatchSkipStrategy::SkipToFirst("zz".into())),
            "`zz`",
        ),
        (Pattern::begin("a").within(Duration::ZERO), "positive"),
        (
            Pattern::begin("a").followed_by_group(Pattern::begin("b")).times(2),
            "group",
        ),
        (
            Pattern::begin("a")
                .one_or_more()
                .greedy()
                .until(is('x'))
                .followed_by("b"),
            "until",
        ),
        (
            Pattern::begin("a")
                .not_next("b")
                .not_followed_by("c")
                .followed_by("d")
                .within(within),
            "negation",
        ),
    ];
    for (p, needle) in cases {
        let e = compile_err(p);
        assert!(e.to_string().contains(needle), "{e} should mention {needle:?}");
    }
}

#[test]
fn state_round_trips_mid_stream() {
    let nfa = Nfa::compile(
        Pattern::begin("a")
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .one_or_more()
            .followed_by("c")
            .where_(is('c'))
            .within(Duration::from_millis(50)),
    )
    .expect("compile");
    let stream = "abxbabcbc";
    let (head, tail) = stream.split_at(4);
    let mut straight = NfaState::new();
    let mut want = feed(&nfa, &mut straight, head, 0, 0);
    let mut restored = NfaState::new();
    let mut got = feed(&nfa, &mut restored, head, 0, 0);
    assert!(restored.partial_match_count() > 0);
    let bytes = serde_json::to_vec(&restored).expect("serialize");
    let mut restored: NfaState<E> = serde_json::from_slice(&bytes).expect("deserialize");
    let mut cloned = restored.clone();
    assert_eq!(
        feed(&nfa, &mut cloned, tail, 4, 4),
        feed(&nfa, &mut restored.clone(), tail, 4, 4)
    );
    want.extend(feed(&nfa, &mut straight, tail, 4, 4));
    got.extend(feed(&nfa, &mut restored, tail, 4, 4));
    assert_eq!(got, want);
    assert!(!want.is_empty());
    // A state built by another pattern is refused.
    let other = Nfa::compile(Pattern::begin("x").where_(is('x'))).expect("compile");
    let err = other.process(&mut restored, E { kind: 'x', id: 99 }, 100, &mut Vec::new());
    assert_eq!(err, Err(CepError::IncompatibleState));
}

#[test]
fn cap_drops_the_oldest_partial_matches() {
    let nfa = Nfa::compile(Pattern::begin("a").where_(is('a')).followed_by_any("b").where_(is('b')))
        .expect("compile")
        .with_max_partial_matches(2);
    let mut state = NfaState::new();
    let mut out = Vec::new();
    let mut dropped = 0;
    for (id, kind) in "aaa".chars().enumerate() {
        let stats = nfa
            .process(&mut state, E { kind, id }, id as i64, &mut out)
            .expect("process");
        dropped += stats.dropped;
        assert!(state.partial_match_count() <= 2);
    }
    assert_eq!(dropped, 1);
    nfa.process(&mut state, E { kind: 'b', id: 3 }, 3, &mut out)
        .expect("process");
    // The partial match started by event 0 was dropped.
    assert_eq!(out.iter().map(ids).collect::<Vec<_>>(), vec![vec![1, 3], vec![2, 3]]);
}

#[test]
fn expired_keys_become_empty() {
    let nfa = Nfa::compile(
        Pattern::begin("a")
            .where_(is('a'))
            .followed_by("b")
            .where_(is('b'))
            .times(2)
            .within(Duration::from_millis(10)),
    )
    .expect("compile");
    let mut state = NfaState::new();
    let matches = feed(&nfa, &mut state, "abaxa", 0, 100);
    assert!(matches.is_empty());
    assert_eq!(state.partial_match_count(), 3);
    assert!(state.buffered_events() > 0);
    assert_eq!(state.next_deadline(&nfa), Some(110));
    let (mut m, mut t): (Vec<Match<E>>, Vec<TimedOut<E>>) = (Vec::new(), Vec::new());
    nfa.advance_time(&mut state, 109, &mut m, &mut t).expect("advance");
    assert!(t.is_empty());
    nfa.advance_time(&mut state, 110, &mut m, &mut t).expect("advance");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].get("a").len(), 1);
    assert_eq!(t[0].get("b").len(), 1);
    assert_eq!(t[0].timeout_timestamp(), 110);
    nfa.advance_time(&mut state, 1_000, &mut m, &mut t).expect("advance");
    assert_eq!(t.len(), 3);
    assert!(state.is_empty());
    assert_eq!(state.buffered_events(), 0);
    assert_eq!(state.buffered_nodes(), 0);
    assert_eq!(state.next_deadline(&nfa), None);
    // Late events are refused, not panicked on.
    let late = nfa.process(&mut state, E { kind: 'a', id: 9 }, 999, &mut m);
    assert!(matches!(late, Err(CepError::LateEvent { .. })));

    // Reset, the state serves another key from any time on, exactly like a fresh one.
    state.reset();
    let mut fresh = NfaState::new();
    let again = feed(&nfa, &mut state, "abab", 20, 5);
    let expected = feed(&nfa, &mut fresh, "abab", 20, 5);
    assert_eq!(again.iter().map(ids).collect::<Vec<_>>(), vec![vec![20, 21, 23]]);
    assert_eq!(again, expected);
    assert_eq!(state.partial_match_count(), fresh.partial_match_count());
    assert_eq!(state.next_deadline(&nfa), fresh.next_deadline(&nfa));
}

#[test]
fn trailing_not_followed_by_completes_when_the_window_passes() {
    let nfa = Nfa::compile(
        Pattern::begin("a")
            .where_(is('a'))
            .not_followed_by("b")
            .where_(is('b'))
            .within(Duration::from_millis(5)),
    )
    .expect("compile");
    let mut state = NfaState::new();
    // a@0 is killed by b@2; a@3 survives: its window [3, 8) has no b.
    let mut out = feed(&nfa, &mut state, "axbax", 0, 0);
    assert!(out.is_empty());
    assert_eq!(state.next_deadline(&nfa), Some(8));
    nfa.advance_time(&mut state, 8, &mut out, &mut Vec::new())
        .expect("advance");
    assert_eq!(out.iter().map(ids).collect::<Vec<_>>(), vec![vec![3]]);
    assert!(state.is_empty());
}

#[test]
fn groups_flatten_to_their_steps() {
    let grouped = Pattern::begin("a")
        .where_(is('a'))
        .followed_by_group(Pattern::begin("b").where_(is('b')).next("c").where_(is('c')))
        .followed_by("d")
        .where_(is('d'));
    let flat = Pattern::begin("a")
        .where_(is('a'))
        .followed_by("b")
        .where_(is('b'))
        .next("c")
        .where_(is('c'))
        .followed_by("d")
        .where_(is('d'));
    let stream = "axbcbdbcxd";
    let run = |p| {
        let nfa = Nfa::compile(p).expect("compile");
        feed(&nfa, &mut NfaState::new(), stream, 0, 0)
            .iter()
            .map(ids)
            .collect::<Vec<_>>()
    };
    let want = run(flat);
    assert_eq!(run(grouped), want);
    assert_eq!(want, vec![vec![0, 2, 3, 5]]);
}

#[test]
fn iterative_conditions_see_the_partial_match() {
    // Strictly increasing values (kind encodes the value).
    let nfa = Nfa::compile(
        Pattern::begin("up")
            .where_iter(|e: &E, ctx| ctx.events("up").last().is_none_or(|l| l.kind < e.kind))
            .times(3)
            .consecutive(),
    )
    .expect("compile");
    let out = feed(&nfa, &mut NfaState::new(), "1231342", 0, 0);
    assert_eq!(
        out.iter().map(ids).collect::<Vec<_>>(),
        vec![vec![0, 1, 2], vec![3, 4, 5]]
    );
}

// ---- the flagship fraud rule ----

/// Per user: five FAILs (OKs in between do not matter) within 60 s; resume after a match.
fn fraud_nfa() -> Nfa<(bool, usize)> {
    Nfa::compile(
        Pattern::begin_with_skip("fails", AfterMatchSkipStrategy::SkipPastLastEvent)
            .where_(|e: &(bool, usize)| e.0)
            .times(5)
            .within(Duration::from_secs(60)),
    )
    .expect("compile")
}

/// The rule as the fraud team states it: five consecutive FAILs whose first and last
/// timestamps differ by less than 60,000 ms; after a match, resume after its last event.
fn fraud_oracle(events: &[(bool, i64)]) -> Vec<Vec<usize>> {
    let fails: Vec<usize> = (0..events.len()).filter(|&i| events[i].0).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 5 <= fails.len() {
        let w = &fails[i..i + 5];
        if events[w[4]].1 - events[w[0]].1 < 60_000 {
            out.push(w.to_vec());
            i += 5;
        } else {
            i += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn fraud_rule_matches_its_definition(
        users in prop::collection::vec(
            prop::collection::vec((prop::bool::weighted(0.7), 0..30_000i64), 0..25),
            1..4,
        ),
    ) {
        let nfa = fraud_nfa();
        // Interleave users by time: each user's events in order, one state per user.
        let mut all: Vec<(i64, usize, usize, bool)> = Vec::new();
        let mut per_user: Vec<Vec<(bool, i64)>> = Vec::new();
        for (u, evs) in users.iter().enumerate() {
            let mut ts = 0;
            let mut mine = Vec::new();
            for (i, &(fail, dt)) in evs.iter().enumerate() {
                ts += dt;
                mine.push((fail, ts));
                all.push((ts, u, i, fail));
            }
            per_user.push(mine);
        }
        all.sort();
        let mut states: Vec<NfaState<(bool, usize)>> = users.iter().map(|_| NfaState::new()).collect();
        let mut got: Vec<Vec<Vec<usize>>> = vec![Vec::new(); users.len()];
        for (ts, u, i, fail) in all {
            let mut out = Vec::new();
            nfa.process(&mut states[u], (fail, i), ts, &mut out).expect("process");
            got[u].extend(out.iter().map(|m| m.get("fails").iter().map(|e| e.1).collect::<Vec<_>>()));
        }
        for (u, state) in states.iter_mut().enumerate() {
            let mut out = Vec::new();
            nfa.advance_time(state, i64::MAX / 2, &mut out, &mut Vec::new()).expect("advance");
            got[u].extend(out.iter().map(|m| m.get("fails").iter().map(|e| e.1).collect::<Vec<_>>()));
            prop_assert!(state.is_empty());
            prop_assert_eq!(&got[u], &fraud_oracle(&per_user[u]));
        }
    }
}

// ---- examples from Flink's CEP documentation ----

/// Events named like the docs (`a`, `b1`, `c`...): the kind is the first letter.
fn named(nfa: &Nfa<String>, stream: &str) -> Vec<String> {
    let mut state = NfaState::new();
    let mut out = Vec::new();
    for (i, e) in stream.split_whitespace().enumerate() {
        nfa.process(&mut state, e.to_owned(), i as i64, &mut out)
            .expect("process");
    }
    nfa.advance_time(&mut state, i64::MAX / 2, &mut out, &mut Vec::new())
        .expect("advance");
    out.iter()
        .map(|m| m.events().cloned().collect::<Vec<_>>().join(" "))
        .collect()
}

fn kind(k: &'static str) -> impl Fn(&String) -> bool + Send + Sync + 'static {
    move |e| k.contains(&e[..1])
}

#[test]
fn flink_docs_loop_contiguity() {
    // "C D A1 A2 A3 D A4 B" with `c` followed_by `a+` followed_by `b`.
    let pattern = |inner: fn(Pattern<String>) -> Pattern<String>| {
        let p = Pattern::begin("start")
            .where_(kind("c"))
            .followed_by("middle")
            .where_(kind("a"))
            .one_or_more();
        Nfa::compile(inner(p).followed_by("end").where_(kind("b"))).expect("compile")
    };
    let stream = "c d a1 a2 a3 d a4 b";
    assert_eq!(
        named(&pattern(|p| p.consecutive()), stream),
        ["c a1 b", "c a1 a2 b", "c a1 a2 a3 b"]
    );
    assert_eq!(
        named(&pattern(|p| p), stream),
        ["c a1 b", "c a1 a2 b", "c a1 a2 a3 b", "c a1 a2 a3 a4 b"]
    );
    let mut combinations = named(&pattern(|p| p.allow_combinations()), stream);
    combinations.sort();
    assert_eq!(
        combinations,
        [
            "c a1 a2 a3 a4 b",
            "c a1 a2 a3 b",
            "c a1 a2 a4 b",
            "c a1 a2 b",
            "c a1 a3 a4 b",
            "c a1 a3 b",
            "c a1 a4 b",
            "c a1 b"
        ]
    );
}

#[test]
fn flink_docs_contiguity() {
    // Pattern "a b", stream "a c b1 b2".
    let p = |f: fn(Pattern<String>) -> Pattern<String>| {
        Nfa::compile(f(Pattern::begin("a").where_(kind("a"))).where_(kind("b"))).expect("compile")
    };
    assert!(named(&p(|p| p.next("b")), "a c b1 b2").is_empty());
    assert_eq!(named(&p(|p| p.followed_by("b")), "a c b1 b2"), ["a b1"]);
    assert_eq!(named(&p(|p| p.followed_by_any("b")), "a c b1 b2"), ["a b1", "a b2"]);
}

#[test]
fn flink_docs_skip_strategies() {
    use AfterMatchSkipStrategy::*;
    // Pattern "b+ c" (greedy), stream "b1 b2 b3 c".
    let run = |skip| {
        let p = Pattern::begin_with_skip("b", skip)
            .where_(kind("b"))
            .one_or_more()
            .greedy()
            .followed_by("c")
            .where_(kind("c"))
            // Matches are held back while the earlier-starting loop waits for more `b`s; the
            // window ends that wait.
            .within(Duration::from_millis(100));
        named(&Nfa::compile(p).expect("compile"), "b1 b2 b3 c")
    };
    let all = ["b1 b2 b3 c", "b2 b3 c", "b3 c"];
    assert_eq!(run(NoSkip), all);
    assert_eq!(run(SkipToNext), all);
    assert_eq!(run(SkipPastLastEvent), ["b1 b2 b3 c"]);
    assert_eq!(run(SkipToFirst("b".into())), all);
    assert_eq!(run(SkipToLast("b".into())), ["b1 b2 b3 c", "b3 c"]);

    // Pattern "(a | b | c) (b | c) c+.greedy d", stream "a b c1 c2 c3 d".
    let run = |skip| {
        let p = Pattern::begin_with_skip("x", skip)
            .where_(kind("abc"))
            .followed_by("y")
            .where_(kind("bc"))
            .followed_by("z")
            .where_(kind("c"))
            .one_or_more()
            .greedy()
            .followed_by("d")
            .where_(kind("d"))
            .within(Duration::from_millis(100));
        named(&Nfa::compile(p).expect("compile"), "a b c1 c2 c3 d")
    };
    assert_eq!(run(NoSkip), ["a b c1 c2 c3 d", "b c1 c2 c3 d", "c1 c2 c3 d"]);
    assert_eq!(run(SkipToFirst("z".into())), ["a b c1 c2 c3 d", "c1 c2 c3 d"]);

    // Pattern "a b+", stream "a b1 b2 b3".
    let run = |skip| {
        let p = Pattern::begin_with_skip("a", skip)
            .where_(kind("a"))
            .followed_by("b")
            .where_(kind("b"))
            .one_or_more();
        named(&Nfa::compile(p).expect("compile"), "a b1 b2 b3")
    };
    assert_eq!(run(NoSkip), ["a b1", "a b1 b2", "a b1 b2 b3"]);
    assert_eq!(run(SkipToNext), ["a b1"]);
}

#[test]
fn compiled_patterns_are_shareable() {
    fn assert_send_sync<X: Send + Sync>() {}
    assert_send_sync::<Nfa<E>>();
    assert_send_sync::<NfaState<E>>();
    assert_send_sync::<Pattern<E>>();
}
