//! The compiled pattern ([`Nfa`], shareable between subtasks) and the state of one key
//! ([`NfaState`], serializable), with event processing, time advancement and match emission.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::compiler::{self, Action, Compiled, Cond, SkipRt, StateId, StateKind};
use super::error::{CepError, Result};
use super::pattern::{Contiguity, Pattern};
use super::shared_buffer::SharedBuffer;
use super::skip::pruning_point;

use super::matches::{Match, MatchContext, TimedOut};

/// A compiled pattern: immutable, cheap to share (`Arc`) between the subtasks of an operator.
pub struct Nfa<T> {
    c: Compiled<T>,
    max_partial: usize,
    /// Whether events that satisfy no condition can be dropped before they reach any key
    /// (see [`Nfa::may_match`]).
    filterable: bool,
    /// Where conditions evaluated outside a partial match look for matched events.
    empty: SharedBuffer<T>,
}

impl<T> fmt::Debug for Nfa<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nfa")
            .field("states", &self.c.states.len())
            .field("within_ms", &self.c.within_ms)
            .field("skip", &self.c.skip)
            .field("max_partial_matches", &self.max_partial)
            .finish()
    }
}

/// Counters of one [`Nfa::process`] or [`Nfa::advance_time`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    /// Matches emitted by the call.
    pub matches: usize,
    /// Partial matches that timed out during the call (delivered now by `advance_time`, or by
    /// the next `advance_time` when found by `process`).
    pub timed_out: usize,
    /// Partial matches discarded because the key exceeded its cap.
    pub dropped: usize,
    /// Partial matches of the key after the call.
    pub partial_matches: usize,
}

/// A partial match (Flink's `ComputationState`): an NFA state and the last node of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Comp {
    state: StateId,
    node: u32,
    start_ts: i64,
    start_seq: u64,
}

/// Reusable buffers, so that processing an event allocates nothing in the steady state.
#[derive(Debug, Default)]
struct Scratch {
    partials: Vec<Comp>,
    done: Vec<Comp>,
    stack: Vec<StateId>,
    takes: Vec<(StateId, u16)>,
    ignores: Vec<StateId>,
    path: Vec<(u16, u32)>,
}

thread_local! {
    /// Working buffers of `process`, per thread (each subtask runs on its own), so that a
    /// key's state carries none of them.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// This thread's working buffers (empty ones if they are in use already).
fn take_scratch() -> Scratch {
    SCRATCH.with(|s| s.take())
}

/// Gives the working buffers back for the next call.
fn put_scratch(scratch: Scratch) {
    SCRATCH.with(|s| *s.borrow_mut() = scratch);
}

/// The CEP state of one key: its partial matches, its held-back complete matches and the
/// shared buffer of their events. Serializable, to be kept in keyed state and checkpointed;
/// it is only valid with the [`Nfa`] that created it (checked).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
pub struct NfaState<T> {
    fingerprint: Option<u64>,
    /// Sorted by `start_seq` (an invariant of processing: new partial matches start last).
    partials: Vec<Comp>,
    /// Complete matches waiting for earlier-starting partial matches (skip strategies only).
    completed: Vec<Comp>,
    /// Partial matches found expired by `process`, to be delivered by `advance_time`.
    timed_out: Vec<Comp>,
    buffer: SharedBuffer<T>,
    next_seq: u64,
    current_time: Option<i64>,
}

impl<T> Default for NfaState<T> {
    fn default() -> Self {
        NfaState {
            fingerprint: None,
            partials: Vec::new(),
            completed: Vec::new(),
            timed_out: Vec::new(),
            buffer: SharedBuffer::default(),
            next_seq: 0,
            current_time: None,
        }
    }
}

impl<T: Clone> Clone for NfaState<T> {
    fn clone(&self) -> Self {
        NfaState {
            fingerprint: self.fingerprint,
            partials: self.partials.clone(),
            completed: self.completed.clone(),
            timed_out: self.timed_out.clone(),
            buffer: self.buffer.clone(),
            next_seq: self.next_seq,
            current_time: self.current_time,
        }
    }
}

impl<T> NfaState<T> {
    /// Makes this the state of a key that never saw an event, keeping the capacity of its
    /// buffers (to reuse one state for many keys without allocating).
    pub fn reset(&mut self) {
        self.fingerprint = None;
        self.partials.clear();
        self.completed.clear();
        self.timed_out.clear();
        self.buffer.clear();
        self.next_seq = 0;
        self.current_time = None;
    }

    /// A fresh state for a key that has no partial match.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the key holds nothing: the operator may then clear its state.
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty() && self.completed.is_empty() && self.timed_out.is_empty()
    }

    /// Number of running partial matches.
    pub fn partial_match_count(&self) -> usize {
        self.partials.len()
    }

    /// Number of events held in the shared buffer.
    pub fn buffered_events(&self) -> usize {
        self.buffer.live_events()
    }

    /// Number of match-path nodes held in the shared buffer.
    pub fn buffered_nodes(&self) -> usize {
        self.buffer.live_nodes()
    }

    /// The earliest time at which [`Nfa::advance_time`] would change this state (a timeout, a
    /// trailing `not_followed_by` completing, or timed-out partial matches still to deliver):
    /// register an event-time timer there. `None` if time alone changes nothing.
    pub fn next_deadline(&self, nfa: &Nfa<T>) -> Option<i64> {
        let within = nfa.c.within_ms?;
        let queued = self.timed_out.iter().map(|c| c.start_ts.saturating_add(within)).min();
        let running = self.partials.first().map(|c| c.start_ts.saturating_add(within));
        queued.into_iter().chain(running).min()
    }
}

impl<T: Clone + Send + Sync + 'static> Nfa<T> {
    /// Validates and compiles a pattern.
    pub fn compile(pattern: Pattern<T>) -> Result<Self> {
        let c = compiler::compile(pattern)?;
        let filterable = c.negs.is_empty()
            && c.steps.iter().enumerate().all(|(i, s)| {
                let looping = s.max != Some(1);
                s.cond.is_some()
                    && !s.iterative
                    && !s.greedy
                    && (i == 0 || s.outer != Contiguity::Strict)
                    && (!looping || s.inner != Contiguity::Strict)
            });
        Ok(Nfa {
            c,
            max_partial: usize::MAX,
            filterable,
            empty: SharedBuffer::default(),
        })
    }

    /// Whether `event` can matter to any key's matching. False only for an event that
    /// satisfies no step's condition (nor any `until`) of a pattern whose steps all skip
    /// what they do not take: no strict contiguity, no negation, no greedy loop, no
    /// iterative condition. Such an event would be ignored by every partial match and
    /// start none, so the CEP operator drops it before buffering it: the matches are the
    /// same (it only saves the work). Timeouts may not be: with a skip strategy, a partial
    /// match that would have timed out at the dropped event's time can be pruned by a later
    /// match instead, so the operator keeps every event when timed-out partial matches are
    /// asked for. Always true for other patterns.
    pub fn may_match(&self, event: &T) -> bool {
        if !self.filterable {
            return true;
        }
        let ctx = MatchContext::new(&self.empty, None, &self.c.steps);
        self.c
            .steps
            .iter()
            .any(|s| s.cond.as_ref().is_none_or(|c| c(event, &ctx)) || s.until.as_ref().is_some_and(|u| u(event, &ctx)))
    }

    /// Caps the partial matches of each key at `n` (at least 1). When an event leaves a key
    /// with more, the partial matches that started earliest are dropped (not reported as
    /// timed out) and counted in [`ProcessStats::dropped`]: a bounded memory at the price of
    /// missing the matches they would have produced.
    pub fn with_max_partial_matches(mut self, n: usize) -> Self {
        self.max_partial = n.max(1);
        self
    }

    /// The pattern's window in milliseconds, if any.
    pub fn within_ms(&self) -> Option<i64> {
        self.c.within_ms
    }

    /// Number of NFA states (for diagnostics).
    pub fn state_count(&self) -> usize {
        self.c.states.len()
    }

    fn bind(&self, st: &mut NfaState<T>) -> Result<()> {
        match st.fingerprint {
            Some(f) if f != self.c.fingerprint => Err(CepError::IncompatibleState),
            _ => {
                st.fingerprint = Some(self.c.fingerprint);
                Ok(())
            }
        }
    }

    fn kind(&self, s: StateId) -> StateKind {
        self.c.states.get(s as usize).map_or(StateKind::Stop, |s| s.kind)
    }

    /// Feeds one event of the key, at `ts` (milliseconds), not older than the previous event
    /// or watermark of the key. First expires partial matches whose window has passed at `ts`
    /// (as [`advance_time`](Self::advance_time) would; their timed-out partial matches are
    /// delivered by the next `advance_time` call), then advances every partial match, starts a
    /// new one if the event can begin the pattern, and appends complete matches to `matches`,
    /// ordered by their first event.
    pub fn process(
        &self,
        st: &mut NfaState<T>,
        event: T,
        ts: i64,
        matches: &mut Vec<Match<T>>,
    ) -> Result<ProcessStats> {
        self.bind(st)?;
        if let Some(now) = st.current_time.filter(|now| ts < *now) {
            return Err(CepError::LateEvent {
                timestamp: ts,
                current_time: now,
            });
        }
        st.current_time = Some(ts);
        let mut stats = ProcessStats::default();
        self.expire(st, ts, matches, &mut stats);

        let seq = st.next_seq;
        st.next_seq += 1;
        let eid = st.buffer.insert_event(event, ts, seq);
        let mut scratch = take_scratch();
        let mut old = std::mem::take(&mut st.partials);
        scratch.partials.clear();
        scratch.done.clear();
        for comp in &old {
            self.advance(&mut st.buffer, Some(comp), eid, &mut scratch);
            st.buffer.release(comp.node);
        }
        self.advance(&mut st.buffer, None, eid, &mut scratch);
        st.buffer.drop_if_unused(eid);
        // The key keeps its own vector (sized to its own partial matches), not the thread's.
        old.clear();
        old.append(&mut scratch.partials);
        st.partials = old;
        if st.partials.len() > self.max_partial {
            let n = st.partials.len() - self.max_partial;
            for c in st.partials.drain(..n) {
                st.buffer.release(c.node);
            }
            stats.dropped += n;
        }
        let done = std::mem::take(&mut scratch.done);
        put_scratch(scratch);
        self.emit(st, done, matches, &mut stats);
        stats.partial_matches = st.partials.len();
        Ok(stats)
    }

    /// Advances the key's time to `watermark`: partial matches whose window has passed
    /// (`watermark - start >= within`) are removed and appended to `timed_out` (with those
    /// found by earlier `process` calls), matches of a trailing `not_followed_by` whose window
    /// passed are emitted, and held-back matches they were waiting for are released.
    pub fn advance_time(
        &self,
        st: &mut NfaState<T>,
        watermark: i64,
        matches: &mut Vec<Match<T>>,
        timed_out: &mut Vec<TimedOut<T>>,
    ) -> Result<ProcessStats> {
        self.bind(st)?;
        let mut stats = ProcessStats::default();
        if st.current_time.is_none_or(|now| watermark > now) {
            st.current_time = Some(watermark);
        }
        self.expire(st, watermark, matches, &mut stats);
        let mut queued = std::mem::take(&mut st.timed_out);
        queued.sort_by_key(|c| (c.start_seq, c.node));
        let mut scratch = take_scratch();
        let mut path = std::mem::take(&mut scratch.path);
        let mut previous = None;
        for c in queued {
            if previous != Some(c.node) {
                st.buffer.path_into(Some(c.node), &mut path);
                let partial = self.materialize(&st.buffer, &path);
                let timeout = c.start_ts.saturating_add(self.c.within_ms.unwrap_or(0));
                timed_out.push(TimedOut { partial, timeout });
                previous = Some(c.node);
            }
            st.buffer.release(c.node);
        }
        scratch.path = path;
        put_scratch(scratch);
        stats.partial_matches = st.partials.len();
        Ok(stats)
    }

    /// Removes the partial matches expired at `now`: pending ones complete, others are queued
    /// as timed out.
    fn expire(&self, st: &mut NfaState<T>, now: i64, matches: &mut Vec<Match<T>>, stats: &mut ProcessStats) {
        let Some(within) = self.c.within_ms else { return };
        // Start timestamps grow with start positions, so the expired ones are a prefix.
        let n = st
            .partials
            .iter()
            .take_while(|c| now.saturating_sub(c.start_ts) >= within)
            .count();
        let mut done = Vec::new();
        for c in st.partials.drain(..n) {
            if self.kind(c.state) == StateKind::Pending {
                done.push(c);
            } else {
                st.timed_out.push(c);
                stats.timed_out += 1;
            }
        }
        self.emit(st, done, matches, stats);
    }

    fn eval(&self, cond: &Cond, event: &T, ctx: &MatchContext<'_, T>) -> bool {
        let call =
            |c: &Option<super::pattern::Condition<T>>, default: bool| c.as_ref().map_or(default, |f| f(event, ctx));
        match cond {
            Cond::True => true,
            Cond::Step(i) => self.c.steps.get(*i).is_some_and(|s| call(&s.cond, true)),
            Cond::Until(i) => self.c.steps.get(*i).is_some_and(|s| call(&s.until, false)),
            Cond::Neg(i) => self.c.negs.get(*i).is_some_and(|n| call(&n.cond, true)),
            Cond::Not(c) => !self.eval(c, event, ctx),
            Cond::And(a, b) => self.eval(a, event, ctx) && self.eval(b, event, ctx),
        }
    }

    /// Computes the successors of one partial match (`None`: the start state) for event `eid`,
    /// pushing them to `scratch.partials` and complete matches to `scratch.done`.
    fn advance(&self, buffer: &mut SharedBuffer<T>, comp: Option<&Comp>, eid: u32, scratch: &mut Scratch) {
        let Some(stored) = buffer.event(eid) else { return };
        let (ts, seq) = (stored.ts, stored.seq);
        let node = comp.map(|c| c.node);
        scratch.takes.clear();
        scratch.ignores.clear();
        scratch.stack.clear();
        scratch.stack.push(comp.map_or(self.c.start, |c| c.state));
        {
            // Phase 1: evaluate the edges reachable through `Proceed` edges.
            let ctx = MatchContext::new(buffer, node, &self.c.steps);
            let event = &stored.event;
            while let Some(s) = scratch.stack.pop() {
                let Some(state) = self.c.states.get(s as usize) else {
                    continue;
                };
                for edge in &state.edges {
                    if !self.eval(&edge.cond, event, &ctx) {
                        continue;
                    }
                    match edge.action {
                        Action::Proceed => match self.kind(edge.target) {
                            // A negation matched: the whole path dies (Flink's stop state).
                            StateKind::Stop => return,
                            StateKind::Final | StateKind::Pending => {}
                            StateKind::Normal => scratch.stack.push(edge.target),
                        },
                        Action::Take => scratch.takes.push((edge.target, state.step.unwrap_or_default())),
                        // The start state never skips events: a match begins at its first event.
                        Action::Ignore if comp.is_some() => scratch.ignores.push(edge.target),
                        Action::Ignore => {}
                    }
                }
            }
        }
        // Phase 2: create the successors.
        let (start_ts, start_seq) = comp.map_or((ts, seq), |c| (c.start_ts, c.start_seq));
        let mk = |state, node| Comp {
            state,
            node,
            start_ts,
            start_seq,
        };
        if let Some(node) = node {
            for &target in &scratch.ignores {
                buffer.retain(node);
                if self.kind(target) == StateKind::Final {
                    scratch.done.push(mk(target, node));
                } else {
                    scratch.partials.push(mk(target, node));
                }
            }
        }
        for &(target, step) in &scratch.takes {
            let new = buffer.put(eid, step, node);
            let eager = self.c.states.get(target as usize).and_then(|s| s.eager_end);
            for s in std::iter::once(target).chain(eager.filter(|e| *e != target)) {
                buffer.retain(new);
                if self.kind(s) == StateKind::Final {
                    scratch.done.push(mk(s, new));
                } else {
                    scratch.partials.push(mk(s, new));
                }
            }
        }
    }

    /// Emits newly completed matches, ordered by first event, then (for equal first events) by
    /// length, then by their paths compared lexicographically as `(event position, step)`
    /// sequences.
    fn emit(&self, st: &mut NfaState<T>, mut done: Vec<Comp>, out: &mut Vec<Match<T>>, stats: &mut ProcessStats) {
        if done.len() > 1 {
            let mut path = Vec::new();
            let mut keyed: Vec<(Vec<(u64, u16)>, Comp)> = done
                .drain(..)
                .map(|c| {
                    st.buffer.path_into(Some(c.node), &mut path);
                    let key = path
                        .iter()
                        .map(|&(step, e)| (st.buffer.event(e).map_or(0, |e| e.seq), step))
                        .collect();
                    (key, c)
                })
                .collect();
            keyed.sort_by(|a, b| {
                (a.1.start_seq, a.0.len())
                    .cmp(&(b.1.start_seq, b.0.len()))
                    .then_with(|| a.0.cmp(&b.0))
            });
            done.extend(keyed.into_iter().map(|(_, c)| c));
        }
        if self.c.skip == SkipRt::NoSkip {
            for c in done {
                self.emit_one(st, c, out, stats);
            }
            return;
        }
        st.completed.extend(done);
        st.completed.sort_by_key(|c| c.start_seq);
        // Emit while no running partial match started earlier (Flink holds matches back so
        // that skipping is applied in start order).
        while let Some(&head) = st.completed.first() {
            if st.partials.first().is_some_and(|p| p.start_seq < head.start_seq) {
                break;
            }
            st.completed.remove(0);
            if let Some(point) = self.emit_one(st, head, out, stats) {
                for list in [&mut st.partials, &mut st.completed] {
                    list.retain(|c| {
                        let prune = point.prunes(c.start_seq);
                        if prune {
                            st.buffer.release(c.node);
                        }
                        !prune
                    });
                }
            }
        }
    }

    fn emit_one(
        &self,
        st: &mut NfaState<T>,
        c: Comp,
        out: &mut Vec<Match<T>>,
        stats: &mut ProcessStats,
    ) -> Option<super::skip::PruningPoint> {
        let mut scratch = take_scratch();
        let mut path = std::mem::take(&mut scratch.path);
        st.buffer.path_into(Some(c.node), &mut path);
        out.push(self.materialize(&st.buffer, &path));
        stats.matches += 1;
        let point = if self.c.skip == SkipRt::NoSkip {
            None
        } else {
            let seqs: Vec<(u16, u64)> = path
                .iter()
                .map(|&(s, e)| (s, st.buffer.event(e).map_or(0, |e| e.seq)))
                .collect();
            pruning_point(self.c.skip, &seqs)
        };
        st.buffer.release(c.node);
        scratch.path = path;
        put_scratch(scratch);
        point
    }

    fn materialize(&self, buffer: &SharedBuffer<T>, path: &[(u16, u32)]) -> Match<T> {
        let mut steps: Vec<(Arc<str>, Vec<T>)> = Vec::new();
        let (mut start, mut end) = (i64::MAX, i64::MIN);
        for &(step, e) in path {
            let Some(stored) = buffer.event(e) else { continue };
            start = start.min(stored.ts);
            end = end.max(stored.ts);
            let name = self.c.steps.get(usize::from(step)).map(|s| s.name.clone());
            match (steps.last_mut(), name) {
                (Some((n, events)), Some(name)) if Arc::ptr_eq(n, &name) => events.push(stored.event.clone()),
                (_, Some(name)) => steps.push((name, vec![stored.event.clone()])),
                (_, None) => {}
            }
        }
        if start > end {
            (start, end) = (0, 0);
        }
        Match { steps, start, end }
    }
}
