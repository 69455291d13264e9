//! The pattern builder: a Flink-like fluent API describing a sequence of steps.
//!
//! Builder methods never fail; mistakes (e.g. `times(0)`, a quantifier applied twice) are
//! recorded and reported by [`Nfa::compile`](super::Nfa::compile) together with the structural
//! checks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::matches::MatchContext;

/// A step condition: the event and the partial match it would extend.
pub type Condition<T> = Arc<dyn Fn(&T, &MatchContext<'_, T>) -> bool + Send + Sync>;

/// How events that are not part of a match may sit between two events of the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contiguity {
    /// No event in between (`next`, `consecutive`).
    Strict,
    /// Events in between are skipped as long as they do not satisfy the awaited condition
    /// (`followed_by`, the default inside loops): "skip till next".
    Relaxed,
    /// Any event in between is skipped, and a satisfying event may be skipped too
    /// (`followed_by_any`, `allow_combinations`): "skip till any".
    NonDeterministicRelaxed,
}

/// What to discard after a match is emitted (Flink's `AfterMatchSkipStrategy`).
///
/// Matches are emitted ordered by their first event; with any strategy but
/// [`NoSkip`](Self::NoSkip) a completed match is held back until no partial match that started
/// earlier is still running, so that skipping is applied in that order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AfterMatchSkipStrategy {
    /// Keep every partial match: every possible match is emitted.
    #[default]
    NoSkip,
    /// Discard partial matches that started with (or before) the first event of the match.
    SkipToNext,
    /// Discard partial matches that started at or before the last event of the match.
    SkipPastLastEvent,
    /// Discard partial matches that started before the first event of the named step in the
    /// match (nothing is discarded if the step matched no event).
    SkipToFirst(String),
    /// Discard partial matches that started before the last event of the named step in the
    /// match (nothing is discarded if the step matched no event).
    SkipToLast(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    Positive,
    NotNext,
    NotFollowedBy,
}

/// One named step of a pattern, as written by the user.
pub(crate) struct Step<T> {
    pub(crate) name: String,
    pub(crate) kind: StepKind,
    /// Contiguity with the previous step (irrelevant for the first step and negations).
    pub(crate) contiguity: Contiguity,
    pub(crate) condition: Option<Condition<T>>,
    /// Whether a condition sees the partial match (`where_iter`, `or_iter`).
    pub(crate) iterative: bool,
    pub(crate) until: Option<Condition<T>>,
    pub(crate) min: u32,
    /// `None`: unbounded.
    pub(crate) max: Option<u32>,
    pub(crate) quantified: bool,
    pub(crate) optional: bool,
    pub(crate) greedy: bool,
    pub(crate) inner: Contiguity,
    pub(crate) inner_set: bool,
}

impl<T> Step<T> {
    fn new(name: &str, kind: StepKind, contiguity: Contiguity) -> Self {
        Step {
            name: name.to_owned(),
            kind,
            contiguity,
            condition: None,
            iterative: false,
            until: None,
            min: 1,
            max: Some(1),
            quantified: false,
            optional: false,
            greedy: false,
            inner: Contiguity::Relaxed,
            inner_set: false,
        }
    }
}

pub(crate) enum Element<T> {
    Step(Step<T>),
    Group {
        contiguity: Contiguity,
        pattern: Box<Pattern<T>>,
        quantified: bool,
    },
}

/// A CEP pattern: a sequence of named steps with conditions, quantifiers and contiguity,
/// an optional `within` window and an after-match skip strategy.
///
/// Conditions and quantifier methods apply to the most recently added step.
///
/// ```
/// use std::time::Duration;
/// use floe_operators::cep::{AfterMatchSkipStrategy, Pattern};
///
/// let p = Pattern::<(char, i32)>::begin_with_skip("start", AfterMatchSkipStrategy::SkipPastLastEvent)
///     .where_(|e| e.0 == 'a')
///     .followed_by("middle")
///     .where_(|e| e.0 == 'b')
///     .one_or_more()
///     .next("end")
///     .where_(|e| e.0 == 'c')
///     .within(Duration::from_secs(10));
/// assert_eq!(p.step_names(), vec!["start", "middle", "end"]);
/// ```
pub struct Pattern<T> {
    pub(crate) elements: Vec<Element<T>>,
    pub(crate) within: Option<Duration>,
    pub(crate) skip: AfterMatchSkipStrategy,
    pub(crate) errors: Vec<String>,
}

impl<T> fmt::Debug for Pattern<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("steps", &self.step_names())
            .field("within", &self.within)
            .field("skip", &self.skip)
            .finish()
    }
}

impl<T> Pattern<T> {
    /// Names of the steps, in order, including negated steps and those inside groups.
    pub fn step_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for e in &self.elements {
            match e {
                Element::Step(s) => out.push(s.name.as_str()),
                Element::Group { pattern, .. } => out.extend(pattern.step_names()),
            }
        }
        out
    }
}

impl<T: 'static> Pattern<T> {
    /// Starts a pattern with its first step, without after-match skipping.
    pub fn begin(name: &str) -> Self {
        Self::begin_with_skip(name, AfterMatchSkipStrategy::NoSkip)
    }

    /// Starts a pattern with its first step and an after-match skip strategy.
    pub fn begin_with_skip(name: &str, skip: AfterMatchSkipStrategy) -> Self {
        Pattern {
            elements: vec![Element::Step(Step::new(name, StepKind::Positive, Contiguity::Strict))],
            within: None,
            skip,
            errors: Vec::new(),
        }
    }

    /// Starts a pattern with a group (a nested pattern). Quantifiers on groups are not
    /// supported: compilation rejects them.
    pub fn begin_group(pattern: Pattern<T>) -> Self {
        Pattern {
            elements: vec![Element::Group {
                contiguity: Contiguity::Strict,
                pattern: Box::new(pattern),
                quantified: false,
            }],
            within: None,
            skip: AfterMatchSkipStrategy::NoSkip,
            errors: Vec::new(),
        }
    }

    /// Sets the after-match skip strategy.
    pub fn skip(mut self, skip: AfterMatchSkipStrategy) -> Self {
        self.skip = skip;
        self
    }

    fn push_step(mut self, name: &str, kind: StepKind, contiguity: Contiguity) -> Self {
        self.elements.push(Element::Step(Step::new(name, kind, contiguity)));
        self
    }

    fn push_group(mut self, pattern: Pattern<T>, contiguity: Contiguity) -> Self {
        self.elements.push(Element::Group {
            contiguity,
            pattern: Box::new(pattern),
            quantified: false,
        });
        self
    }

    /// Appends a step whose first event must directly follow the previous step's last event.
    pub fn next(self, name: &str) -> Self {
        self.push_step(name, StepKind::Positive, Contiguity::Strict)
    }

    /// Appends a step; non-matching events in between are skipped (relaxed contiguity).
    pub fn followed_by(self, name: &str) -> Self {
        self.push_step(name, StepKind::Positive, Contiguity::Relaxed)
    }

    /// Appends a step; any events in between are skipped, even matching ones
    /// (non-deterministic relaxed contiguity).
    pub fn followed_by_any(self, name: &str) -> Self {
        self.push_step(name, StepKind::Positive, Contiguity::NonDeterministicRelaxed)
    }

    /// Appends a negated step: the event right after the previous step must not satisfy its
    /// condition.
    pub fn not_next(self, name: &str) -> Self {
        self.push_step(name, StepKind::NotNext, Contiguity::Strict)
    }

    /// Appends a negated step: no event between the previous step and the next one may
    /// satisfy its condition. As the last step it requires [`within`](Self::within): the match
    /// is emitted once the window has passed without such an event.
    pub fn not_followed_by(self, name: &str) -> Self {
        self.push_step(name, StepKind::NotFollowedBy, Contiguity::Relaxed)
    }

    /// Appends a group with strict contiguity to the previous step.
    pub fn next_group(self, pattern: Pattern<T>) -> Self {
        self.push_group(pattern, Contiguity::Strict)
    }

    /// Appends a group with relaxed contiguity to the previous step.
    pub fn followed_by_group(self, pattern: Pattern<T>) -> Self {
        self.push_group(pattern, Contiguity::Relaxed)
    }

    /// Appends a group with non-deterministic relaxed contiguity to the previous step.
    pub fn followed_by_any_group(self, pattern: Pattern<T>) -> Self {
        self.push_group(pattern, Contiguity::NonDeterministicRelaxed)
    }

    /// Sets the window: every event of a match is less than `window` after its first event
    /// (timestamps are milliseconds). If called several times, the smallest window wins.
    pub fn within(mut self, window: Duration) -> Self {
        self.within = Some(self.within.map_or(window, |w| w.min(window)));
        self
    }

    fn with_step(mut self, what: &str, f: impl FnOnce(&mut Step<T>) -> Result<(), String>) -> Self {
        let err = match self.elements.last_mut() {
            Some(Element::Step(s)) => f(s).err().map(|e| format!("step `{}`: {e}", s.name)),
            Some(Element::Group { quantified, .. }) => {
                *quantified = true;
                Some(format!("`{what}` on a group is not supported"))
            }
            None => Some(format!("`{what}` without a step")),
        };
        self.errors.extend(err);
        self
    }

    /// Adds a condition (AND-ed with the existing one).
    pub fn where_(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.add_condition("where", move |e, _| f(e), false, true)
    }

    /// Adds an iterative condition, which also sees the partial match (AND-ed).
    pub fn where_iter(self, f: impl Fn(&T, &MatchContext<'_, T>) -> bool + Send + Sync + 'static) -> Self {
        self.add_condition("where", f, true, true)
    }

    /// Adds an alternative condition (OR-ed with the existing one).
    pub fn or(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.add_condition("or", move |e, _| f(e), false, false)
    }

    /// Adds an alternative iterative condition (OR-ed with the existing one).
    pub fn or_iter(self, f: impl Fn(&T, &MatchContext<'_, T>) -> bool + Send + Sync + 'static) -> Self {
        self.add_condition("or", f, true, false)
    }

    fn add_condition(
        self,
        what: &str,
        f: impl Fn(&T, &MatchContext<'_, T>) -> bool + Send + Sync + 'static,
        iterative: bool,
        and: bool,
    ) -> Self {
        self.with_step(what, move |s| {
            s.condition = Some(match s.condition.take() {
                None => Arc::new(f),
                Some(g) if and => Arc::new(move |e: &T, c: &MatchContext<'_, T>| g(e, c) && f(e, c)),
                Some(g) => Arc::new(move |e: &T, c: &MatchContext<'_, T>| g(e, c) || f(e, c)),
            });
            s.iterative |= iterative;
            Ok(())
        })
    }

    /// Stop condition of a looping step: once an event satisfies it, the loop accepts no more
    /// events (such an event is neither taken nor skipped by the loop).
    pub fn until(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.with_step("until", move |s| {
            if s.until.is_some() {
                return Err("`until` given twice".into());
            }
            s.until = Some(Arc::new(move |e: &T, _: &MatchContext<'_, T>| f(e)));
            Ok(())
        })
    }

    fn quantify(self, what: &str, min: u32, max: Option<u32>) -> Self {
        self.with_step(what, |s| {
            if s.quantified {
                return Err(format!("`{what}`: a quantifier was already applied"));
            }
            if max == Some(0) || max.is_some_and(|m| m < min) {
                return Err(format!("`{what}`: invalid range {min}..={max:?}"));
            }
            s.quantified = true;
            if min == 0 {
                s.optional = true;
                s.min = 1;
            } else {
                s.min = min;
            }
            s.max = max;
            Ok(())
        })
    }

    /// The step matches exactly `n` events (`n > 0`).
    pub fn times(self, n: u32) -> Self {
        if n == 0 {
            return self.with_step("times", |_| Err("`times(0)` is invalid".into()));
        }
        self.quantify("times", n, Some(n))
    }

    /// The step matches between `min` and `max` events, both inclusive; `min == 0` makes it
    /// optional.
    pub fn times_range(self, min: u32, max: u32) -> Self {
        self.quantify("times_range", min, Some(max))
    }

    /// The step matches one or more events.
    pub fn one_or_more(self) -> Self {
        self.quantify("one_or_more", 1, None)
    }

    /// The step matches `n` or more events.
    pub fn times_or_more(self, n: u32) -> Self {
        self.quantify("times_or_more", n, None)
    }

    /// The step may match no event at all.
    pub fn optional(self) -> Self {
        self.with_step("optional", |s| {
            s.optional = true;
            Ok(())
        })
    }

    /// A step with a variable number of events takes as many as it can: it is left only at an
    /// event that it cannot take.
    pub fn greedy(self) -> Self {
        self.with_step("greedy", |s| {
            s.greedy = true;
            Ok(())
        })
    }

    /// Strict contiguity between the events of a quantified step.
    pub fn consecutive(self) -> Self {
        self.inner(Contiguity::Strict, "consecutive")
    }

    /// Non-deterministic relaxed contiguity between the events of a quantified step.
    pub fn allow_combinations(self) -> Self {
        self.inner(Contiguity::NonDeterministicRelaxed, "allow_combinations")
    }

    fn inner(self, c: Contiguity, what: &str) -> Self {
        self.with_step(what, |s| {
            if s.inner_set {
                return Err(format!("`{what}`: inner contiguity was already set"));
            }
            s.inner = c;
            s.inner_set = true;
            Ok(())
        })
    }
}
