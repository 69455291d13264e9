//! CEP state stays bounded: keys that each see two failed payments and then go quiet hold
//! partial matches until the watermark passes their `within`, and then leave nothing
//! behind — no partial match, no pending event, no keyed state, no timer: a million keys on
//! the heap backend, and 100,000 in RocksDB with a cache of 2,000 entries, so that nearly
//! all of them live in the database (a million there takes minutes in a debug build).

use std::sync::Arc;
use std::time::Duration;

use floe_checkpoints::StateBackendKind;
use floe_operators::cep::operator::{CepFunction, CepMetrics};
use floe_operators::cep::{AfterMatchSkipStrategy, Match, Nfa, Pattern};
use floe_operators::keyed::KeyedProcessOperator;
use floe_operators::Collector;
use floe_runtime::harness::OperatorHarness;
use floe_runtime::{Record, TaskInfo, UserError};

const BASE: i64 = 1_000_000;
const WITHIN_MS: i64 = 60_000;

/// (key, failed?)
type Event = (u64, bool);

fn operator(metrics: &CepMetrics) -> Box<dyn floe_runtime::Operator> {
    let pattern = Pattern::begin_with_skip("fails", AfterMatchSkipStrategy::SkipPastLastEvent)
        .where_(|e: &Event| e.1)
        .times(5)
        .within(Duration::from_millis(WITHIN_MS as u64));
    let nfa = Arc::new(Nfa::compile(pattern).unwrap());
    let select = |m: Match<Event>, out: &mut Collector<u64>| -> Result<(), UserError> {
        out.collect(m.get("fails")[0].0);
        Ok(())
    };
    let function = CepFunction::new(nfa, select).with_metrics(metrics.clone());
    Box::new(KeyedProcessOperator::new(Arc::new(|e: &Event| e.0), function))
}

fn info(backend: StateBackendKind) -> TaskInfo {
    let mut info = TaskInfo::new("cep-state", "cep", 0, 1, 128);
    info.state_backend = backend;
    info
}

/// Runs the scenario on `backend`; returns the harness after the watermark passed every
/// partial match.
fn quiet_keys_leave_nothing_behind(backend: StateBackendKind, keys: u64) -> OperatorHarness {
    let metrics = CepMetrics::default();
    let mut h = OperatorHarness::new(operator(&metrics), info(backend), 0).unwrap();
    // Two failed payments per key, 1 ms apart, keys spread over 10 s of event time.
    let mut batch = Vec::with_capacity(1024);
    for k in 0..keys {
        let ts = BASE + (k % 10_000) as i64;
        batch.push(Record::new((k, true), ts));
        batch.push(Record::new((k, true), ts + 1));
        if batch.len() >= 1024 {
            h.process(std::mem::take(&mut batch)).unwrap();
        }
    }
    h.process(batch).unwrap();
    let pending = metrics.pending_events.get();
    let flush = floe_operators::cep::operator::FLUSH_EVERY;
    assert!(
        pending > 2 * keys as i64 - flush,
        "every event waits for the watermark: {pending}"
    );

    // The watermark passes the events: each key now has two partial matches.
    h.watermark(BASE + 20_000).unwrap();
    assert_eq!(metrics.pending_events.get(), 0);
    assert_eq!(metrics.partial_matches.get(), 2 * keys as i64);
    assert!(h.take_values::<u64>().unwrap().is_empty(), "two failures are no match");

    // ... and then their `within`: nothing is left, though no key saw another event.
    h.watermark(BASE + 10_000 + WITHIN_MS + 1).unwrap();
    assert_eq!(metrics.partial_matches.get(), 0);
    assert_eq!(
        metrics.timed_out.get(),
        2 * keys,
        "timed out (counted: no side output was asked for)"
    );
    assert!(h.take_values::<u64>().unwrap().is_empty());
    h
}

/// The keyed state and timers in `snapshot`, read back into a heap backend and written
/// again: what is really left.
fn live_bytes(snapshot: floe_checkpoints::StateSnapshot) -> usize {
    let metrics = CepMetrics::default();
    let mut h =
        OperatorHarness::restored(operator(&metrics), info(StateBackendKind::Memory), 0, Some(snapshot)).unwrap();
    h.snapshot(2).unwrap().size()
}

#[test]
fn a_million_quiet_keys_leave_no_state_on_the_heap() {
    let mut h = quiet_keys_leave_nothing_behind(StateBackendKind::Memory, 1_000_000);
    let left = h.snapshot(1).unwrap();
    assert!(left.size() < 64 * 1024, "{} bytes of keyed state left", left.size());
    assert!(live_bytes(left) < 64 * 1024);
}

#[cfg(feature = "rocksdb")]
#[test]
fn quiet_keys_leave_no_state_in_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let backend = StateBackendKind::RocksDb {
        dir: dir.path().to_path_buf(),
        cache_entries: 2_000,
        block_cache_bytes: 8 << 20,
    };
    let mut h = quiet_keys_leave_nothing_behind(backend, 100_000);
    let left = live_bytes(h.snapshot(1).unwrap());
    assert!(
        left < 64 * 1024,
        "{left} bytes of keyed state and timers left in RocksDB"
    );
}
