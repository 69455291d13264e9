//! The CEP operator: a keyed process function that keeps each key's events until the
//! watermark passes them, feeds them to the key's NFA in event-time order, hands complete
//! matches to the user's function, and prunes partial matches whose `within` ran out.
//!
//! Per key, one value state holds the key's [`NfaState`] (partial matches and their shared
//! buffer) and the events not yet processed, so state beyond memory lives in RocksDB and is
//! checkpointed and restored like any keyed state. Two kinds of event-time timer drive it:
//! one at the earliest pending event (registered only when an event earlier than every
//! pending one arrives), and one at the key's next `within` deadline, so that a key that goes
//! quiet is pruned (and its state cleared) once the watermark passes its partial matches.

use std::cmp::Ordering;
use std::sync::Arc;

use floe_runtime::metrics::{Counter, Gauge};
use floe_runtime::{Timestamp, UserError, MAX_WATERMARK};
use serde::{Deserialize, Serialize};

use super::{Match, Nfa, NfaState, TimedOut};
use crate::collector::{Collector, OutputTag};
use crate::keyed::{KeyedContext, KeyedProcessFunction, ValueStateDescriptor};

/// What a pattern's matches become: called once per complete match, in the order the
/// matches are found (Flink's `PatternProcessFunction`). Closures
/// `FnMut(Match<T>, &mut Collector<O>)` are such functions.
pub trait PatternProcessFunction<T, O>: Send + 'static {
    /// Processes one match (events by step name); emits any number of records.
    fn process_match(&mut self, m: Match<T>, out: &mut Collector<O>) -> Result<(), UserError>;
}

impl<T, O, F> PatternProcessFunction<T, O> for F
where
    F: FnMut(Match<T>, &mut Collector<O>) -> Result<(), UserError> + Send + 'static,
{
    fn process_match(&mut self, m: Match<T>, out: &mut Collector<O>) -> Result<(), UserError> {
        self(m, out)
    }
}

/// Orders events of equal timestamp (Flink's event comparator); without one they are
/// processed in arrival order.
pub type TieBreaker<T> = Arc<dyn Fn(&T, &T) -> Ordering + Send + Sync>;

/// Counters of a CEP operator (shared by its subtasks).
#[derive(Clone, Debug, Default)]
pub struct CepMetrics {
    /// Events that arrived behind the watermark (sent to the late side output, or dropped).
    pub late: Counter,
    /// Partial matches dropped because a key hit the cap on partial matches.
    pub dropped_partial_matches: Counter,
    /// Complete matches.
    pub matches: Counter,
    /// Partial matches that timed out.
    pub timed_out: Counter,
    /// Events dropped before buffering because no step could take them
    /// ([`Nfa::may_match`]); updated like the gauges.
    pub filtered: Counter,
    /// Partial matches alive now, over all keys (updated at least every
    /// [`FLUSH_EVERY`] events and at every timer).
    pub partial_matches: Gauge,
    /// Events waiting for the watermark, over all keys (same updates).
    pub pending_events: Gauge,
}

/// Gauges are updated from per-subtask deltas at least this often (in events), so that
/// subtasks do not contend on them per event.
pub const FLUSH_EVERY: i64 = 4_096;

/// One key's CEP state: its NFA and the events the watermark has not passed yet.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: serde::de::DeserializeOwned"))]
pub struct CepKeyState<T> {
    /// The key's NFA, only while it has something (most keys have no partial match most of
    /// the time, and then their state is a few dozen bytes).
    nfa: Option<Box<NfaState<T>>>,
    /// Events not yet processed, sorted by (timestamp, tie breaker, arrival).
    pending: Vec<(Timestamp, T)>,
    /// The event-time timer registered for the earliest pending event, if any.
    pending_timer: Option<Timestamp>,
    /// The event-time timer registered for the next `within` deadline, if any.
    deadline_timer: Option<Timestamp>,
}

impl<T> Default for CepKeyState<T> {
    fn default() -> Self {
        CepKeyState {
            nfa: None,
            pending: Vec::new(),
            pending_timer: None,
            deadline_timer: None,
        }
    }
}

/// What one subtask's copy of the function works with (a clone starts afresh).
struct Work<T> {
    matches: Vec<Match<T>>,
    timeouts: Vec<TimedOut<T>>,
    /// An empty NFA state kept for the next key that needs one (its buffers keep their
    /// capacity), so that the many events that start nothing allocate nothing.
    spare: Option<Box<NfaState<T>>>,
    /// Changes of the gauges not yet added to them.
    delta_partial: i64,
    delta_pending: i64,
    delta_filtered: u64,
}

impl<T> Default for Work<T> {
    fn default() -> Self {
        Work {
            matches: Vec::new(),
            timeouts: Vec::new(),
            spare: None,
            delta_partial: 0,
            delta_pending: 0,
            delta_filtered: 0,
        }
    }
}

/// Runs a compiled pattern on a keyed stream; see the [module docs](self).
pub struct CepFunction<T, O, P> {
    nfa: Arc<Nfa<T>>,
    function: P,
    state: ValueStateDescriptor<CepKeyState<T>>,
    tie_breaker: Option<TieBreaker<T>>,
    late: Option<OutputTag<T>>,
    timed_out: Option<OutputTag<TimedOut<T>>>,
    metrics: CepMetrics,
    work: Work<T>,
    _o: std::marker::PhantomData<fn() -> O>,
}

impl<T, O, P: Clone> Clone for CepFunction<T, O, P> {
    fn clone(&self) -> Self {
        CepFunction {
            nfa: self.nfa.clone(),
            function: self.function.clone(),
            state: self.state.clone(),
            tie_breaker: self.tie_breaker.clone(),
            late: self.late.clone(),
            timed_out: self.timed_out.clone(),
            metrics: self.metrics.clone(),
            work: Work::default(),
            _o: std::marker::PhantomData,
        }
    }
}

impl<T, O, P> CepFunction<T, O, P> {
    /// Runs `nfa`, handing matches to `function`.
    pub fn new(nfa: Arc<Nfa<T>>, function: P) -> Self {
        CepFunction {
            nfa,
            function,
            state: ValueStateDescriptor::new("cep"),
            tie_breaker: None,
            late: None,
            timed_out: None,
            metrics: CepMetrics::default(),
            work: Work::default(),
            _o: std::marker::PhantomData,
        }
    }

    /// Orders events of equal timestamp with `f`.
    pub fn with_tie_breaker(mut self, f: Option<TieBreaker<T>>) -> Self {
        self.tie_breaker = f;
        self
    }

    /// Sends events behind the watermark to `tag` (otherwise they are counted and dropped).
    pub fn with_late_output(mut self, tag: Option<OutputTag<T>>) -> Self {
        self.late = tag;
        self
    }

    /// Sends timed-out partial matches to `tag` (otherwise they are counted and dropped).
    pub fn with_timed_out_output(mut self, tag: Option<OutputTag<TimedOut<T>>>) -> Self {
        self.timed_out = tag;
        self
    }

    /// Counts into `metrics`.
    pub fn with_metrics(mut self, metrics: CepMetrics) -> Self {
        self.metrics = metrics;
        self
    }
}

impl<T, O, P> CepFunction<T, O, P> {
    fn flush_gauges(&mut self) {
        if self.work.delta_filtered != 0 {
            self.metrics.filtered.add(std::mem::take(&mut self.work.delta_filtered));
        }
        self.metrics
            .partial_matches
            .add(std::mem::take(&mut self.work.delta_partial));
        self.metrics
            .pending_events
            .add(std::mem::take(&mut self.work.delta_pending));
    }
}

/// Where `(ts, event)` goes in `pending` (after every event it does not precede).
fn insert_at<T>(pending: &[(Timestamp, T)], ts: Timestamp, event: &T, tie: Option<&TieBreaker<T>>) -> usize {
    pending.partition_point(|(t, e)| match t.cmp(&ts) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => tie.is_none_or(|f| f(e, event) != Ordering::Greater),
    })
}

impl<K, T, O, P> KeyedProcessFunction<K, T, O> for CepFunction<T, O, P>
where
    K: floe_checkpoints::StateKey,
    T: floe_checkpoints::StateData + Sync,
    O: floe_runtime::Data,
    P: PatternProcessFunction<T, O>,
{
    fn process_element(
        &mut self,
        value: T,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<O>,
    ) -> Result<(), UserError> {
        let Some(ts) = ctx.timestamp() else {
            return Err(
                "a CEP pattern needs event timestamps: assign them (assign_timestamps, or a Kafka source \
                        with timestamps) before key_by(..).pattern(..)"
                    .into(),
            );
        };
        if ts <= ctx.current_watermark() {
            self.metrics.late.inc();
            if let Some(tag) = &self.late {
                out.side(tag, value);
            }
            return Ok(());
        }
        // Not when timed-out partial matches are asked for: a dropped event's time can
        // decide whether a partial match times out or is pruned by a later match.
        if self.timed_out.is_none() && !self.nfa.may_match(&value) {
            // No step could take it and none needs to see it pass: nothing to keep.
            self.work.delta_filtered += 1;
            if self.work.delta_filtered >= FLUSH_EVERY as u64 {
                self.flush_gauges();
            }
            return Ok(());
        }
        let tie = self.tie_breaker.as_ref();
        let timer = ctx.state().update(&self.state, CepKeyState::default, |s| {
            let at = insert_at(&s.pending, ts, &value, tie);
            s.pending.insert(at, (ts, value));
            if s.pending_timer.is_none_or(|t| ts < t) {
                s.pending_timer = Some(ts);
                Some(ts)
            } else {
                None
            }
        })?;
        if let Some(t) = timer {
            ctx.register_event_time_timer(t);
        }
        self.work.delta_pending += 1;
        if self.work.delta_pending >= FLUSH_EVERY {
            self.flush_gauges();
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<O>,
    ) -> Result<(), UserError> {
        let watermark = ctx.current_watermark();
        let nfa = &*self.nfa;
        let (matches, timeouts, spare) = (&mut self.work.matches, &mut self.work.timeouts, &mut self.work.spare);
        let mut dropped = 0u64;
        let (mut partial, mut pending) = (0i64, 0i64);
        let outcome = ctx
            .state()
            .update(&self.state, CepKeyState::default, |s| -> Result<_, UserError> {
                let mut state = s.nfa.take().or_else(|| spare.take()).unwrap_or_default();
                let before = state.partial_match_count() as i64;
                if s.pending_timer.is_some_and(|t| t <= timestamp) {
                    s.pending_timer = None;
                }
                if s.deadline_timer.is_some_and(|t| t <= timestamp) {
                    s.deadline_timer = None;
                }
                let due = s.pending.partition_point(|(t, _)| *t <= watermark);
                pending -= due as i64;
                let mut drained = s.pending.drain(..due);
                for (ts, event) in drained.by_ref() {
                    dropped += nfa.process(&mut state, event, ts, matches)?.dropped as u64;
                }
                drop(drained);
                if s.pending.is_empty() {
                    // A quiet key keeps no buffer.
                    s.pending = Vec::new();
                }
                dropped += nfa.advance_time(&mut state, watermark, matches, timeouts)?.dropped as u64;
                let mut timers = [None, None];
                if let Some(&(first, _)) = s.pending.first() {
                    if s.pending_timer.is_none_or(|t| first < t) {
                        s.pending_timer = Some(first);
                        timers[0] = Some(first);
                    }
                }
                if let Some(deadline) = state.next_deadline(nfa) {
                    if deadline != MAX_WATERMARK && s.deadline_timer.is_none_or(|t| deadline < t) {
                        s.deadline_timer = Some(deadline);
                        timers[1] = Some(deadline);
                    }
                }
                partial = state.partial_match_count() as i64 - before;
                if state.is_empty() {
                    state.reset();
                    *spare = Some(state);
                } else {
                    s.nfa = Some(state);
                }
                Ok((timers, s.pending.is_empty() && s.nfa.is_none()))
            })?;
        let (timers, empty) = outcome?;
        self.work.delta_partial += partial;
        self.work.delta_pending += pending;
        self.flush_gauges();
        self.metrics.dropped_partial_matches.add(dropped);
        if empty {
            ctx.state().clear(&self.state)?;
        }
        for t in timers.into_iter().flatten() {
            ctx.register_event_time_timer(t);
        }
        self.metrics.matches.add(self.work.matches.len() as u64);
        for m in self.work.matches.drain(..) {
            let end = m.end_timestamp();
            out.set_timestamp(end);
            self.function.process_match(m, out)?;
        }
        self.metrics.timed_out.add(self.work.timeouts.len() as u64);
        match &self.timed_out {
            Some(tag) => {
                for t in self.work.timeouts.drain(..) {
                    out.side(tag, t);
                }
            }
            None => self.work.timeouts.clear(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_events_are_ordered_by_time_then_tie_breaker_then_arrival() {
        let mut pending: Vec<(Timestamp, (u32, u32))> = Vec::new();
        let by_second: TieBreaker<(u32, u32)> = Arc::new(|a, b| a.1.cmp(&b.1));
        for e in [(5, (1, 9)), (3, (2, 1)), (5, (3, 1)), (5, (4, 9)), (1, (5, 0))] {
            let at = insert_at(&pending, e.0, &e.1, Some(&by_second));
            pending.insert(at, e);
        }
        let order: Vec<u32> = pending.iter().map(|(_, e)| e.0).collect();
        assert_eq!(order, vec![5, 2, 3, 1, 4]);
        let mut arrival: Vec<(Timestamp, u32)> = Vec::new();
        for e in [(2, 1), (1, 2), (2, 3)] {
            let at = insert_at(&arrival, e.0, &e.1, None);
            arrival.insert(at, e);
        }
        assert_eq!(arrival, vec![(1, 2), (2, 1), (2, 3)]);
    }

    /// (key, kind, id)
    type Ev = (u8, char, u32);

    fn harness(late: &OutputTag<Ev>, timed_out: &OutputTag<TimedOut<Ev>>) -> floe_runtime::harness::OperatorHarness {
        use crate::cep::Pattern;
        use crate::keyed::KeyedProcessOperator;
        let pattern = Pattern::begin("a")
            .where_(|e: &Ev| e.1 == 'a')
            .followed_by("b")
            .where_(|e: &Ev| e.1 == 'b')
            .within(std::time::Duration::from_millis(100));
        let nfa = Arc::new(Nfa::compile(pattern).unwrap());
        let select = |m: Match<Ev>, out: &mut Collector<(u32, u32)>| -> Result<(), UserError> {
            out.collect((m.get("a")[0].2, m.get("b")[0].2));
            Ok(())
        };
        let f = CepFunction::new(nfa, select)
            .with_late_output(Some(late.clone()))
            .with_timed_out_output(Some(timed_out.clone()));
        let op = KeyedProcessOperator::new(Arc::new(|e: &Ev| e.0), f);
        let info = floe_runtime::TaskInfo::new("t", "cep", 0, 1, 128);
        floe_runtime::harness::OperatorHarness::new(Box::new(op), info, 0).unwrap()
    }

    #[test]
    fn events_wait_for_the_watermark_late_ones_go_aside_and_expired_partials_time_out() {
        use floe_runtime::Record;
        let late: OutputTag<Ev> = OutputTag::new("late");
        let timed_out: OutputTag<TimedOut<Ev>> = OutputTag::new("timed-out");
        let mut h = harness(&late, &timed_out);
        // Out of order within the watermark's bound: matched in event-time order.
        h.process::<Ev>(vec![Record::new((1, 'b', 2), 20), Record::new((1, 'a', 1), 10)])
            .unwrap();
        assert!(
            h.take_values::<(u32, u32)>().unwrap().is_empty(),
            "nothing before the watermark"
        );
        h.watermark(30).unwrap();
        assert_eq!(h.take_values::<(u32, u32)>().unwrap(), vec![(1, 2)]);
        // Behind the watermark: late, not matched.
        h.process::<Ev>(vec![Record::new((1, 'a', 3), 25), Record::new((2, 'a', 4), 40)])
            .unwrap();
        let aside = h.take_side::<Ev>(late.id()).unwrap();
        assert_eq!(aside.iter().map(|r| r.value.2).collect::<Vec<_>>(), vec![3]);
        // Key 2's `a` never sees a `b`: it times out once the watermark passes 40 + 100.
        h.watermark(139).unwrap();
        assert!(h.take_side::<TimedOut<Ev>>(timed_out.id()).unwrap().is_empty());
        h.watermark(140).unwrap();
        let expired = h.take_side::<TimedOut<Ev>>(timed_out.id()).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].value.get("a")[0].2, expired[0].value.timeout_timestamp()),
            (4, 140)
        );
        assert!(h.take_values::<(u32, u32)>().unwrap().is_empty());
    }
}
