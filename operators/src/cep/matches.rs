//! What the engine hands out: complete matches, timed-out partial matches, and the view of a
//! partial match that iterative conditions receive.

use std::cell::OnceCell;
use std::sync::Arc;

use super::compiler::StepRt;
use super::shared_buffer::SharedBuffer;

/// A complete match: the events of each step, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Match<T> {
    pub(crate) steps: Vec<(Arc<str>, Vec<T>)>,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl<T> Match<T> {
    /// The events matched by `step`, empty if it matched none (or does not exist).
    pub fn get(&self, step: &str) -> &[T] {
        self.steps
            .iter()
            .find(|(n, _)| &**n == step)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The steps that matched at least one event, in pattern order, with their events.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &[T])> + '_ {
        self.steps.iter().map(|(n, v)| (&**n, v.as_slice()))
    }

    /// All events of the match, in order.
    pub fn events(&self) -> impl Iterator<Item = &T> + '_ {
        self.steps.iter().flat_map(|(_, v)| v.iter())
    }

    /// Number of events in the match.
    pub fn len(&self) -> usize {
        self.steps.iter().map(|(_, v)| v.len()).sum()
    }

    /// Whether the match has no event (never true for emitted matches).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Timestamp of the first event.
    pub fn start_timestamp(&self) -> i64 {
        self.start
    }

    /// Timestamp of the last event.
    pub fn end_timestamp(&self) -> i64 {
        self.end
    }
}

/// A partial match dropped because its `within` window passed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimedOut<T> {
    pub(crate) partial: Match<T>,
    pub(crate) timeout: i64,
}

impl<T> TimedOut<T> {
    /// The events matched so far, by step.
    pub fn partial(&self) -> &Match<T> {
        &self.partial
    }

    /// The events matched so far by `step`.
    pub fn get(&self, step: &str) -> &[T] {
        self.partial.get(step)
    }

    /// Timestamp of the first event of the partial match.
    pub fn start_timestamp(&self) -> i64 {
        self.partial.start
    }

    /// When the partial match timed out: its start plus the window.
    pub fn timeout_timestamp(&self) -> i64 {
        self.timeout
    }
}

/// The partial match a condition is evaluated against (Flink's `IterativeCondition.Context`).
pub struct MatchContext<'a, T> {
    buffer: &'a SharedBuffer<T>,
    node: Option<u32>,
    steps: &'a [StepRt<T>],
    path: OnceCell<Vec<(u16, &'a T)>>,
}

impl<'a, T> MatchContext<'a, T> {
    pub(crate) fn new(buffer: &'a SharedBuffer<T>, node: Option<u32>, steps: &'a [StepRt<T>]) -> Self {
        MatchContext {
            buffer,
            node,
            steps,
            path: OnceCell::new(),
        }
    }

    fn path(&self) -> &[(u16, &'a T)] {
        self.path.get_or_init(|| {
            let mut ids = Vec::new();
            self.buffer.path_into(self.node, &mut ids);
            let buffer = self.buffer;
            ids.iter()
                .filter_map(|&(s, e)| Some((s, &buffer.event(e)?.event)))
                .collect()
        })
    }

    /// The events already matched to `step` in this partial match, in order (none for an
    /// unknown step).
    pub fn events(&self, step: &str) -> impl Iterator<Item = &'a T> + '_ {
        let idx = self
            .steps
            .iter()
            .position(|s| &*s.name == step)
            .and_then(|i| u16::try_from(i).ok());
        self.path()
            .iter()
            .filter(move |(s, _)| Some(*s) == idx)
            .map(|(_, e)| *e)
    }

    /// All events of this partial match, in order.
    pub fn all_events(&self) -> impl Iterator<Item = &'a T> + '_ {
        self.path().iter().map(|(_, e)| *e)
    }
}
