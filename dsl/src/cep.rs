//! Complex event processing in the DSL: [`KeyedStream::pattern`] runs a
//! [`Pattern`](floe_operators::cep::Pattern) on each key's events in event-time order and
//! turns its matches into records.

use std::sync::Arc;

use floe_checkpoints::{StateData, StateKey};
use floe_operators::cep::operator::{CepFunction, TieBreaker};
pub use floe_operators::cep::operator::{CepMetrics, PatternProcessFunction};
pub use floe_operators::cep::{AfterMatchSkipStrategy, Match, MatchContext, Nfa, Pattern, TimedOut};
use floe_operators::keyed::KeyedProcessOperator;
use floe_operators::{Collector, OutputTag};
use floe_runtime::metrics::Registry;
use floe_runtime::{Data, UserError};

use crate::keyed::KeyedStream;
use crate::stream::{factory, Prototype, Stream};

/// A pattern applied to a keyed stream (Flink's `PatternStream`): choose what becomes of
/// late events and timed-out partial matches, then turn matches into records with
/// [`select`](Self::select), [`flat_select`](Self::flat_select) or [`process`](Self::process).
pub struct PatternStream<K, T> {
    keyed: KeyedStream<K, T>,
    nfa: Result<Nfa<T>, String>,
    tie_breaker: Option<TieBreaker<T>>,
    late: Option<OutputTag<T>>,
    timed_out: Option<OutputTag<TimedOut<T>>>,
    metrics: CepMetrics,
}

impl<K: StateKey, T: StateData + Sync> KeyedStream<K, T> {
    /// Runs `pattern` on each key's events (Flink's `CEP.pattern(keyed, pattern)`).
    ///
    /// Events need event timestamps. Each key's events wait until the watermark passes them
    /// and are then matched in event-time order (ties in arrival order, or by
    /// [`PatternStream::tie_breaker`]); events that arrive behind the watermark are late
    /// ([`PatternStream::side_output_late_data`]). Partial matches live in keyed state
    /// (RocksDB by default) and are pruned when the watermark passes their `within`, even if
    /// the key sees no other event.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// // (user, failed?, ts): three failures within 10 s raise an alert.
    /// let env = Env::local(1);
    /// let events = vec![(1u32, true, 1_000i64), (1, false, 2_000), (1, true, 3_000), (2, true, 3_500), (1, true, 9_000)];
    /// let alerts = env.from_collection(events)
    ///     .assign_timestamps(|e| e.2, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|e| e.0)
    ///     .pattern(
    ///         Pattern::begin_with_skip("fails", AfterMatchSkipStrategy::SkipPastLastEvent)
    ///             .where_(|e: &(u32, bool, i64)| e.1)
    ///             .times(3)
    ///             .within(Duration::from_secs(10)),
    ///     )
    ///     .select(|m| (m.get("fails")[0].0, m.get("fails").len()))
    ///     .collect();
    /// env.execute("cep").unwrap();
    /// assert_eq!(alerts.take(), vec![(1, 3)]);
    /// ```
    pub fn pattern(&self, pattern: Pattern<T>) -> PatternStream<K, T> {
        PatternStream {
            keyed: self.clone(),
            nfa: Nfa::compile(pattern).map_err(|e| e.to_string()),
            tie_breaker: None,
            late: None,
            timed_out: None,
            metrics: CepMetrics::default(),
        }
    }
}

impl<K: StateKey, T: StateData + Sync> PatternStream<K, T> {
    /// Orders events with equal timestamps by `f` (Flink's event comparator), so that
    /// matching does not depend on the order in which such events arrive.
    pub fn tie_breaker(mut self, f: impl Fn(&T, &T) -> std::cmp::Ordering + Send + Sync + 'static) -> Self {
        self.tie_breaker = Some(Arc::new(f));
        self
    }

    /// Caps each key's partial matches at `n`: when an event leaves a key with more, the
    /// ones that started earliest are dropped (counted in [`CepMetrics::dropped_partial_matches`],
    /// not reported as timed out) — bounded memory for keys that would otherwise collect
    /// partial matches without end (e.g. `one_or_more` without `within`), at the price of
    /// the matches they would have completed. Unbounded by default.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let a_then_b = Pattern::begin("a")
    ///     .where_(|e: &(char, i64)| e.0 == 'a')
    ///     .followed_by("b")
    ///     .where_(|e: &(char, i64)| e.0 == 'b');
    /// let matches = env.from_collection(vec![('a', 1i64), ('a', 2), ('a', 3), ('b', 4)])
    ///     .assign_timestamps(|e| e.1, BoundedOutOfOrderness::monotonous())
    ///     .key_by(|_| 0u8)
    ///     .pattern(a_then_b)
    ///     .max_partial_matches(1); // without it: three matches, one per `a`
    /// let metrics = matches.metrics();
    /// let starts = matches.select(|m| m.get("a")[0].1).collect();
    /// env.execute("cap").unwrap();
    /// assert_eq!(starts.take(), vec![3]);
    /// assert_eq!(metrics.dropped_partial_matches.get(), 2);
    /// ```
    pub fn max_partial_matches(mut self, n: usize) -> Self {
        self.nfa = self.nfa.map(|nfa| nfa.with_max_partial_matches(n));
        self
    }

    /// Sends events that arrive behind the watermark to `tag` (otherwise they are dropped
    /// and counted in [`metrics`](Self::metrics)).
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late = Some(tag.clone());
        self
    }

    /// Sends partial matches whose `within` ran out to `tag` (Flink's
    /// `TimedOutPartialMatchHandler`), with the events matched so far by step name.
    pub fn timed_out(mut self, tag: &OutputTag<TimedOut<T>>) -> Self {
        self.timed_out = Some(tag.clone());
        self
    }

    /// The operator's counters (late events, matches, timed-out and dropped partial
    /// matches), shared by its subtasks; also listed in the metrics registry as
    /// `floe_cep_*_total`.
    pub fn metrics(&self) -> CepMetrics {
        self.metrics.clone()
    }

    /// Hands each match to `function`, which emits any number of records.
    pub fn process<O: Data, P: PatternProcessFunction<T, O> + Clone>(self, function: P) -> Stream<O> {
        let nfa = match self.nfa {
            Ok(nfa) => Arc::new(nfa),
            Err(e) => {
                let message = format!("CEP pattern: {e}");
                self.keyed.input().b.borrow_mut().error(message.clone());
                // Never runs: the job fails to build with the error above.
                return self.keyed.keyed_operator(
                    "cep",
                    Arc::new(move |_| Err(floe_runtime::RuntimeError::InvalidGraph(message.clone()))),
                );
            }
        };
        let function = CepFunction::new(nfa, function)
            .with_tie_breaker(self.tie_breaker)
            .with_late_output(self.late)
            .with_timed_out_output(self.timed_out)
            .with_metrics(self.metrics.clone());
        let stream: Stream<O> = {
            let key_fn = self.keyed.key_fn();
            let prototype = Prototype::new(function);
            self.keyed.keyed_operator(
                "cep",
                factory(move |_| Box::new(KeyedProcessOperator::new(key_fn.clone(), prototype.get()))),
            )
        };
        let operator = format!("cep#{}", stream.node_index());
        let registry = Registry::global();
        let m = &self.metrics;
        for (name, help, c) in [
            ("floe_cep_late_events_total", "Events behind the watermark", &m.late),
            ("floe_cep_matches_total", "Complete matches", &m.matches),
            (
                "floe_cep_timed_out_total",
                "Partial matches that timed out",
                &m.timed_out,
            ),
            (
                "floe_cep_dropped_partial_matches_total",
                "Partial matches dropped at the per-key cap",
                &m.dropped_partial_matches,
            ),
            (
                "floe_cep_filtered_events_total",
                "Events no step could take, dropped on arrival",
                &m.filtered,
            ),
        ] {
            registry.register_counter(name, help, &[("operator", &operator)], c);
        }
        for (name, help, g) in [
            ("floe_cep_partial_matches", "Partial matches alive", &m.partial_matches),
            (
                "floe_cep_pending_events",
                "Events waiting for the watermark",
                &m.pending_events,
            ),
        ] {
            registry.register_gauge(name, help, &[("operator", &operator)], g);
        }
        stream
    }

    /// Turns each match into one record.
    pub fn select<O: Data>(self, f: impl Fn(&Match<T>) -> O + Send + Sync + 'static) -> Stream<O> {
        let f = Arc::new(f);
        self.process(move |m: Match<T>, out: &mut Collector<O>| -> Result<(), UserError> {
            out.collect(f(&m));
            Ok(())
        })
    }

    /// Turns each match into any number of records.
    pub fn flat_select<O: Data>(self, f: impl Fn(&Match<T>, &mut Collector<O>) + Send + Sync + 'static) -> Stream<O> {
        let f = Arc::new(f);
        self.process(move |m: Match<T>, out: &mut Collector<O>| -> Result<(), UserError> {
            f(&m, out);
            Ok(())
        })
    }
}
