//! Property tests of the CEP engine (`floe_operators::cep`) against a brute-force oracle, plus
//! unit tests of compilation errors, state serialization, the partial-match cap, expiry and
//! the flagship fraud rule.

#[path = "cep_oracle/oracle.rs"]
mod oracle;
#[path = "cep_oracle/spec.rs"]
mod spec;
#[path = "cep_oracle/unit.rs"]
mod unit;

use floe_operators::cep::{Match, Nfa, NfaState, TimedOut};
use proptest::prelude::*;

use oracle::Path;
use spec::{arb_events, arb_pattern, arb_skip, step_name, Ev, PatternSpec, SkipSpec};

/// A match as step names with event ids, comparable between engine and oracle.
type Named = Vec<(String, Vec<usize>)>;

fn named_match(m: &Match<Ev>) -> Named {
    m.steps()
        .map(|(s, evs)| (s.to_owned(), evs.iter().map(|e| e.id).collect()))
        .collect()
}

fn named_path(p: &Path) -> Named {
    let mut out: Named = Vec::new();
    for &(s, i) in p {
        match out.last_mut() {
            Some((name, ids)) if *name == step_name(s) => ids.push(i),
            _ => out.push((step_name(s), vec![i])),
        }
    }
    out
}

/// How the engine is driven: per event, whether to call `advance_time` first and whether to
/// round-trip the state through serde before it.
#[derive(Debug, Clone, Copy, Default)]
struct Knobs {
    advance_first: bool,
    roundtrip: bool,
}

fn roundtrip(state: NfaState<Ev>) -> NfaState<Ev> {
    let bytes = serde_json::to_vec(&state).expect("serialize state");
    serde_json::from_slice(&bytes).expect("deserialize state")
}

struct EngineOut {
    matches: Vec<Named>,
    timed_out: Vec<(Named, i64)>,
    state: NfaState<Ev>,
}

fn run_engine(nfa: &Nfa<Ev>, events: &[(Ev, i64)], final_watermark: i64, knobs: &[Knobs]) -> EngineOut {
    let mut state = NfaState::new();
    let mut matches: Vec<Match<Ev>> = Vec::new();
    let mut timed_out: Vec<TimedOut<Ev>> = Vec::new();
    for (i, (e, ts)) in events.iter().enumerate() {
        let k = knobs.get(i).copied().unwrap_or_default();
        if k.roundtrip {
            state = roundtrip(state);
        }
        if k.advance_first {
            nfa.advance_time(&mut state, *ts, &mut matches, &mut timed_out)
                .expect("advance_time");
        }
        nfa.process(&mut state, e.clone(), *ts, &mut matches).expect("process");
    }
    nfa.advance_time(&mut state, final_watermark, &mut matches, &mut timed_out)
        .expect("advance_time");
    EngineOut {
        matches: matches.iter().map(named_match).collect(),
        timed_out: timed_out
            .iter()
            .map(|t| (named_match(t.partial()), t.timeout_timestamp()))
            .collect(),
        state,
    }
}

fn check(spec: &PatternSpec, events: &[(Ev, i64)], wm_extra: i64, knobs: &[Knobs]) -> Result<(), TestCaseError> {
    let nfa = Nfa::compile(spec.build()).map_err(|e| TestCaseError::fail(format!("compile: {e}")))?;
    let last_ts = events.last().map_or(0, |e| e.1);
    let final_watermark = last_ts + wm_extra;
    let got = run_engine(&nfa, events, final_watermark, knobs);
    let evs: Vec<Ev> = events.iter().map(|e| e.0.clone()).collect();
    let ts: Vec<i64> = events.iter().map(|e| e.1).collect();
    let want = oracle::oracle(spec, &evs, &ts, final_watermark);
    let want_matches: Vec<Named> = want.matches.iter().map(named_path).collect();
    if std::env::var("CEP_STATS").is_ok() {
        eprintln!(
            "STATS m={} t={} skip={:?}",
            want_matches.len(),
            want.timed_out.len(),
            spec.skip
        );
    }
    prop_assert_eq!(&got.matches, &want_matches, "matches differ");
    let mut got_to = got.timed_out.clone();
    got_to.sort();
    let mut want_to: Vec<(Named, i64)> = want.timed_out.iter().map(|(p, t)| (named_path(p), *t)).collect();
    want_to.sort();
    prop_assert_eq!(&got_to, &want_to, "timed-out partial matches differ");
    // Dropping the events the pattern says cannot matter changes no match. (Timeouts can
    // change with a skip strategy: a partial match that times out at a dropped event's time
    // may instead be pruned by a later match; the CEP operator therefore filters only when
    // timed-out partial matches are not asked for.)
    let relevant: Vec<(Ev, i64)> = events.iter().filter(|(e, _)| nfa.may_match(e)).cloned().collect();
    if relevant.len() < events.len() {
        let filtered = run_engine(&nfa, &relevant, final_watermark, &[]);
        prop_assert_eq!(
            &filtered.matches,
            &got.matches,
            "matches differ when irrelevant events are dropped"
        );
        if spec.skip == SkipSpec::NoSkip {
            let mut filtered_to = filtered.timed_out.clone();
            filtered_to.sort();
            prop_assert_eq!(
                filtered_to,
                got_to,
                "timeouts differ when irrelevant events are dropped"
            );
        }
    }
    // Once every window has passed, the key holds nothing.
    if let Some(w) = spec.within {
        if wm_extra >= w {
            prop_assert!(got.state.is_empty(), "state not empty after all windows passed");
            prop_assert_eq!(got.state.buffered_events(), 0);
            prop_assert_eq!(got.state.next_deadline(&nfa), None);
        }
    }
    if got.state.is_empty() {
        prop_assert_eq!(got.state.buffered_events(), 0, "events leaked");
        prop_assert_eq!(got.state.buffered_nodes(), 0, "nodes leaked");
    }
    Ok(())
}

/// A size knob from the environment, for longer exploratory runs.
fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn arb_knobs() -> impl Strategy<Value = Vec<Knobs>> {
    prop::collection::vec(
        (prop::bool::weighted(0.3), prop::bool::weighted(0.1)).prop_map(|(advance_first, roundtrip)| Knobs {
            advance_first,
            roundtrip,
        }),
        16,
    )
}

fn some_within() -> BoxedStrategy<Option<i64>> {
    (2..8i64).prop_map(Some).boxed()
}

fn any_within() -> BoxedStrategy<Option<i64>> {
    prop::option::weighted(0.6, 2..8i64).boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: env_or("CEP_CASES", 1500) as u32, ..ProptestConfig::default() })]

    /// Everything at once: quantifiers, contiguities, negations, windows, skip strategies.
    #[test]
    fn engine_agrees_with_oracle(
        spec in arb_pattern(env_or("CEP_STEPS", 4), true, arb_skip().boxed(), any_within()),
        events in arb_events(env_or("CEP_EVENTS", 14)),
        wm_extra in 0..10i64,
        knobs in arb_knobs(),
    ) {
        check(&spec, &events, wm_extra, &knobs)?;
    }

    /// Quantifiers, contiguity and windows, all matches (no skipping, no negation).
    #[test]
    fn quantifiers_and_contiguity(
        spec in arb_pattern(3, false, Just(SkipSpec::NoSkip).boxed(), any_within()),
        events in arb_events(12),
        wm_extra in 0..10i64,
    ) {
        check(&spec, &events, wm_extra, &[])?;
    }

    /// Negations (including trailing ones), with and without skipping.
    #[test]
    fn negations(
        spec in arb_pattern(3, true, arb_skip().boxed(), some_within()),
        events in arb_events(12),
        wm_extra in 0..10i64,
    ) {
        check(&spec, &events, wm_extra, &[])?;
    }

    /// Skip strategies with timeouts.
    #[test]
    fn skip_strategies_and_timeouts(
        spec in arb_pattern(2, false, arb_skip().boxed(), some_within()),
        events in arb_events(14),
        wm_extra in 0..10i64,
        knobs in arb_knobs(),
    ) {
        check(&spec, &events, wm_extra, &knobs)?;
    }
}
