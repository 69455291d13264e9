//! Pattern validation and compilation into an NFA (Flink's `NFACompiler`).
//!
//! Groups are flattened first (an unquantified group is its steps, the first one taking the
//! group's contiguity). Each positive step then becomes a chain of states: an *entry* state
//! waiting for its first event and *inner* states counting further events (the last one loops
//! for unbounded quantifiers). Edges are Flink's: `Take` (consume the event into the step),
//! `Ignore` (skip the event, stay waiting) and `Proceed` (epsilon move, evaluated on the current
//! event). As in Flink, skipping an event while an optional continuation is possible moves to a
//! *committed* copy of the state without the `Proceed` edge, so that each match is found once.
//! Negations become `Proceed` edges into a `Stop` state (the path dies) on the states during
//! which they are armed; `not_next` becomes a gate state; a trailing `not_followed_by` becomes
//! the `Pending` end state, completed when the window passes.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{CepError, Result};
use super::pattern::{AfterMatchSkipStrategy, Condition, Contiguity, Element, Pattern, Step, StepKind};

pub(crate) type StateId = u32;

/// Condition of an edge, over the step and negation conditions of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    True,
    /// The condition of positive step `i`.
    Step(usize),
    /// The `until` condition of positive step `i`.
    Until(usize),
    /// The condition of negation `i`.
    Neg(usize),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
}

impl Cond {
    fn not(c: Cond) -> Cond {
        Cond::Not(Box::new(c))
    }

    fn and(a: Cond, b: Cond) -> Cond {
        match (a, b) {
            (Cond::True, x) | (x, Cond::True) => x,
            (a, b) => Cond::And(Box::new(a), Box::new(b)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Take,
    Ignore,
    Proceed,
}

#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) action: Action,
    pub(crate) cond: Cond,
    pub(crate) target: StateId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    Normal,
    Final,
    /// Waiting for the window of a trailing `not_followed_by` to pass.
    Pending,
    Stop,
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) name: Arc<str>,
    pub(crate) kind: StateKind,
    /// The positive step whose events `Take` edges of this state consume.
    pub(crate) step: Option<u16>,
    pub(crate) edges: Vec<Edge>,
    /// The end state (final or pending) reached right after taking an event into this state,
    /// through unconditional `Proceed` edges (or this state itself).
    pub(crate) eager_end: Option<StateId>,
}

/// A positive step, ready to run.
pub(crate) struct StepRt<T> {
    pub(crate) name: Arc<str>,
    pub(crate) cond: Option<Condition<T>>,
    /// Whether `cond` sees the partial match.
    pub(crate) iterative: bool,
    pub(crate) until: Option<Condition<T>>,
    pub(crate) min: u32,
    pub(crate) max: Option<u32>,
    pub(crate) optional: bool,
    pub(crate) greedy: bool,
    pub(crate) outer: Contiguity,
    pub(crate) inner: Contiguity,
    /// `not_next` negation right after this step.
    pub(crate) not_next_after: Option<usize>,
    /// `not_followed_by` negations right after this step.
    pub(crate) nots_after: Vec<usize>,
}

/// A negated step.
pub(crate) struct NegRt<T> {
    pub(crate) name: Arc<str>,
    pub(crate) cond: Option<Condition<T>>,
}

/// The resolved after-match skip strategy (step names replaced by indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipRt {
    NoSkip,
    ToNext,
    PastLast,
    ToFirst(u16),
    ToLast(u16),
}

pub(crate) struct Compiled<T> {
    pub(crate) states: Vec<State>,
    pub(crate) start: StateId,
    pub(crate) steps: Vec<StepRt<T>>,
    pub(crate) negs: Vec<NegRt<T>>,
    pub(crate) within_ms: Option<i64>,
    pub(crate) skip: SkipRt,
    pub(crate) fingerprint: u64,
}

/// Flattens groups into a list of steps, giving each group's contiguity to its first step.
fn flatten<T>(elements: Vec<Element<T>>, first_contiguity: Option<Contiguity>, out: &mut Vec<Step<T>>) {
    for (i, element) in elements.into_iter().enumerate() {
        let override_c = if i == 0 { first_contiguity } else { None };
        match element {
            Element::Step(mut s) => {
                if let Some(c) = override_c {
                    s.contiguity = c;
                }
                out.push(s);
            }
            Element::Group {
                contiguity, pattern, ..
            } => {
                flatten(pattern.elements, Some(override_c.unwrap_or(contiguity)), out);
            }
        }
    }
}

fn collect_group_errors<T>(p: &Pattern<T>, errors: &mut Vec<String>, within: &mut Option<std::time::Duration>) {
    errors.extend(p.errors.iter().cloned());
    if let Some(w) = p.within {
        *within = Some(within.map_or(w, |x| x.min(w)));
    }
    for e in &p.elements {
        if let Element::Group { pattern, .. } = e {
            collect_group_errors(pattern, errors, within);
        }
    }
}

pub(crate) fn compile<T>(pattern: Pattern<T>) -> Result<Compiled<T>> {
    let mut errors = Vec::new();
    let mut within = None;
    collect_group_errors(&pattern, &mut errors, &mut within);
    if let Some(e) = errors.into_iter().next() {
        return Err(if e.contains("not supported") {
            CepError::Unsupported(e)
        } else {
            CepError::invalid(e)
        });
    }
    let skip = pattern.skip.clone();
    let mut flat = Vec::new();
    flatten(pattern.elements, None, &mut flat);
    validate(&flat)?;

    let within_ms = match within {
        None => None,
        Some(d) if d.is_zero() => return Err(CepError::invalid("`within` must be positive")),
        Some(d) => Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    };

    let mut steps: Vec<StepRt<T>> = Vec::new();
    let mut negs: Vec<NegRt<T>> = Vec::new();
    for s in flat {
        match s.kind {
            StepKind::Positive => steps.push(StepRt {
                name: Arc::from(s.name.as_str()),
                cond: s.condition,
                iterative: s.iterative,
                until: s.until,
                min: s.min,
                max: s.max,
                optional: s.optional,
                greedy: s.greedy,
                outer: if steps.is_empty() {
                    Contiguity::Strict
                } else {
                    s.contiguity
                },
                inner: s.inner,
                not_next_after: None,
                nots_after: Vec::new(),
            }),
            kind => {
                let idx = negs.len();
                negs.push(NegRt {
                    name: Arc::from(s.name.as_str()),
                    cond: s.condition,
                });
                // `validate` guarantees that a positive step precedes every negation.
                if let Some(prev) = steps.last_mut() {
                    if kind == StepKind::NotNext {
                        prev.not_next_after = Some(idx);
                    } else {
                        prev.nots_after.push(idx);
                    }
                }
            }
        }
    }
    let last = steps.len() - 1;
    for (j, s) in steps.iter().enumerate() {
        if !s.nots_after.is_empty() && within_ms.is_none() && steps[j + 1..].iter().all(|s| s.optional) {
            return Err(CepError::invalid(format!(
                "a trailing `not_followed_by` (after step `{}`, followed by optional steps only) requires `within`",
                s.name
            )));
        }
    }
    for (i, s) in steps.iter().enumerate() {
        if s.greedy {
            if i == last {
                return Err(CepError::invalid(format!(
                    "step `{}`: a greedy step cannot be the last step of a pattern",
                    s.name
                )));
            }
            if s.not_next_after.is_some() || !s.nots_after.is_empty() || steps[i + 1].optional {
                return Err(CepError::Unsupported(format!(
                    "step `{}`: a greedy step must be followed directly by a non-optional positive step",
                    s.name
                )));
            }
        }
    }

    let skip = match skip {
        AfterMatchSkipStrategy::NoSkip => SkipRt::NoSkip,
        AfterMatchSkipStrategy::SkipToNext => SkipRt::ToNext,
        AfterMatchSkipStrategy::SkipPastLastEvent => SkipRt::PastLast,
        AfterMatchSkipStrategy::SkipToFirst(n) => SkipRt::ToFirst(find_step(&steps, &n)?),
        AfterMatchSkipStrategy::SkipToLast(n) => SkipRt::ToLast(find_step(&steps, &n)?),
    };

    let mut b = Builder {
        steps: &steps,
        states: Vec::new(),
        ids: HashMap::new(),
        work: Vec::new(),
    };
    let start = b.id(Pos::Entry {
        step: 0,
        from: None,
        committed: false,
    });
    while let Some(pos) = b.work.pop() {
        b.build(pos);
    }
    let mut states = b.states;
    for i in 0..states.len() {
        let end = eager_end(&states, i as StateId);
        states[i].eager_end = end;
    }
    let fingerprint = fingerprint(&states, &steps, &negs);
    Ok(Compiled {
        states,
        start,
        steps,
        negs,
        within_ms,
        skip,
        fingerprint,
    })
}

fn find_step<T>(steps: &[StepRt<T>], name: &str) -> Result<u16> {
    steps
        .iter()
        .position(|s| &*s.name == name)
        .and_then(|i| u16::try_from(i).ok())
        .ok_or_else(|| {
            CepError::invalid(format!(
                "the skip strategy names `{name}`, which is not a positive step"
            ))
        })
}

fn validate<T>(flat: &[Step<T>]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    if flat.len() > u16::MAX as usize {
        return Err(CepError::invalid("too many steps"));
    }
    for (i, s) in flat.iter().enumerate() {
        let name = &s.name;
        if name.is_empty() {
            return Err(CepError::invalid("step names must not be empty"));
        }
        if !seen.insert(name.as_str()) {
            return Err(CepError::invalid(format!("duplicate step name `{name}`")));
        }
        if s.kind == StepKind::Positive {
            let variable = s.optional || s.max != Some(s.min);
            if s.greedy && !variable {
                return Err(CepError::invalid(format!(
                    "step `{name}`: `greedy` needs a step with a variable number of events"
                )));
            }
            if s.greedy && s.until.is_some() {
                return Err(CepError::Unsupported(format!(
                    "step `{name}`: `greedy` together with `until`"
                )));
            }
            if s.until.is_some() && s.max.is_some() {
                return Err(CepError::invalid(format!(
                    "step `{name}`: `until` only applies to looping steps (one_or_more, times_or_more)"
                )));
            }
            if s.inner_set && s.max == Some(1) {
                return Err(CepError::invalid(format!(
                    "step `{name}`: `consecutive`/`allow_combinations` need a quantified step"
                )));
            }
            continue;
        }
        if s.quantified || s.optional || s.greedy || s.inner_set || s.until.is_some() {
            return Err(CepError::invalid(format!(
                "negated step `{name}` cannot be quantified, optional, greedy or have `until`"
            )));
        }
        let Some(prev) = i.checked_sub(1).map(|p| &flat[p]) else {
            return Err(CepError::invalid(format!(
                "a pattern cannot start with the negated step `{name}`"
            )));
        };
        if prev.kind == StepKind::Positive && prev.optional {
            return Err(CepError::invalid(format!(
                "negated step `{name}` cannot follow the optional step `{}`",
                prev.name
            )));
        }
        let next_kind = flat.get(i + 1).map(|n| n.kind);
        let adjacent_neg = prev.kind != StepKind::Positive || next_kind.is_some_and(|k| k != StepKind::Positive);
        if adjacent_neg && (s.kind == StepKind::NotNext || prev.kind == StepKind::NotNext) {
            return Err(CepError::Unsupported(format!(
                "negated step `{name}`: `not_next` next to another negation"
            )));
        }
    }
    Ok(())
}

/// An abstract NFA position; each distinct one becomes a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pos {
    /// Waiting for the first event of `step`. `from` is the last step with events when
    /// `not_followed_by` negations after it are armed (`None` otherwise).
    Entry {
        step: usize,
        from: Option<usize>,
        committed: bool,
    },
    /// `count` events of `step` taken (for unbounded steps, `count` saturates at the minimum).
    Inner {
        step: usize,
        count: u32,
        committed: bool,
    },
    /// The `not_next` gate before `step` (`step` may be one past the last step).
    Gate {
        step: usize,
    },
    Final,
    /// A trailing `not_followed_by` after step `from` waits for its window to pass.
    Pending {
        from: usize,
    },
    Stop,
}

struct Builder<'a, T> {
    steps: &'a [StepRt<T>],
    states: Vec<State>,
    ids: HashMap<Pos, StateId>,
    work: Vec<Pos>,
}

impl<T> Builder<'_, T> {
    fn id(&mut self, pos: Pos) -> StateId {
        if let Some(&id) = self.ids.get(&pos) {
            return id;
        }
        let (name, kind, step): (Arc<str>, _, _) = match pos {
            Pos::Entry { step, .. } | Pos::Inner { step, .. } => (
                self.steps[step].name.clone(),
                StateKind::Normal,
                u16::try_from(step).ok(),
            ),
            Pos::Gate { .. } => (Arc::from("$not_next$"), StateKind::Normal, None),
            Pos::Final => (Arc::from("$final$"), StateKind::Final, None),
            Pos::Pending { .. } => (Arc::from("$pending$"), StateKind::Pending, None),
            Pos::Stop => (Arc::from("$stop$"), StateKind::Stop, None),
        };
        let id = self.states.len() as StateId;
        self.states.push(State {
            name,
            kind,
            step,
            edges: Vec::new(),
            eager_end: None,
        });
        self.ids.insert(pos, id);
        self.work.push(pos);
        id
    }

    fn armed_from(&self, j: usize) -> Option<usize> {
        (!self.steps[j].nots_after.is_empty()).then_some(j)
    }

    fn exit(&self, j: usize) -> Pos {
        let s = &self.steps[j];
        if s.not_next_after.is_some() {
            Pos::Gate { step: j + 1 }
        } else if j + 1 == self.steps.len() {
            self.end(Some(j))
        } else {
            Pos::Entry {
                step: j + 1,
                from: self.armed_from(j),
                committed: false,
            }
        }
    }

    /// The end reached when no step is left after step `from` (`None`: no step taken).
    fn end(&self, from: Option<usize>) -> Pos {
        match from {
            Some(j) if !self.steps[j].nots_after.is_empty() => Pos::Pending { from: j },
            _ => Pos::Final,
        }
    }

    fn after_take(&self, k: usize, count: u32) -> Pos {
        let s = &self.steps[k];
        match s.max {
            Some(max) if count >= max => self.exit(k),
            Some(_) => Pos::Inner {
                step: k,
                count,
                committed: false,
            },
            None => Pos::Inner {
                step: k,
                count: count.min(s.min.max(1)),
                committed: false,
            },
        }
    }

    fn take_cond(&self, k: usize) -> Cond {
        let c = Cond::Step(k);
        if self.steps[k].until.is_some() {
            Cond::and(c, Cond::not(Cond::Until(k)))
        } else {
            c
        }
    }

    fn ignore_cond(&self, k: usize, contiguity: Contiguity, inner: bool) -> Option<Cond> {
        let base = match contiguity {
            Contiguity::Strict => return None,
            Contiguity::Relaxed => Cond::not(Cond::Step(k)),
            Contiguity::NonDeterministicRelaxed => Cond::True,
        };
        Some(if inner && self.steps[k].until.is_some() {
            Cond::and(base, Cond::not(Cond::Until(k)))
        } else {
            base
        })
    }

    fn proceed_cond(&self, k: usize) -> Cond {
        if self.steps[k].greedy {
            Cond::not(self.take_cond(k))
        } else {
            Cond::True
        }
    }

    fn build(&mut self, pos: Pos) {
        let me = self.ids[&pos];
        let mut edges: Vec<(Action, Cond, Pos)> = Vec::new();
        let stop = |n: &usize| (Action::Proceed, Cond::Neg(*n), Pos::Stop);
        match pos {
            Pos::Entry {
                step: k,
                from,
                committed,
            } => {
                let s = &self.steps[k];
                edges.push((Action::Take, self.take_cond(k), self.after_take(k, 1)));
                let optional = s.optional && !committed;
                if let Some(c) = self.ignore_cond(k, s.outer, false) {
                    let target = if optional {
                        Pos::Entry {
                            step: k,
                            from,
                            committed: true,
                        }
                    } else {
                        pos
                    };
                    edges.push((Action::Ignore, c, target));
                }
                if optional {
                    let target = if k + 1 == self.steps.len() {
                        self.end(from)
                    } else {
                        Pos::Entry {
                            step: k + 1,
                            from,
                            committed: false,
                        }
                    };
                    edges.push((Action::Proceed, self.proceed_cond(k), target));
                }
                if let Some(j) = from {
                    edges.extend(self.steps[j].nots_after.iter().map(stop));
                }
                if k > 0 && self.steps[k - 1].greedy {
                    let gate = Cond::not(self.take_cond(k - 1));
                    for e in &mut edges {
                        e.1 = Cond::and(e.1.clone(), gate.clone());
                    }
                }
            }
            Pos::Inner {
                step: k,
                count,
                committed,
            } => {
                let s = &self.steps[k];
                edges.push((Action::Take, self.take_cond(k), self.after_take(k, count + 1)));
                let can_leave = count >= s.min && !committed;
                if let Some(c) = self.ignore_cond(k, s.inner, true) {
                    let target = if can_leave {
                        Pos::Inner {
                            step: k,
                            count,
                            committed: true,
                        }
                    } else {
                        pos
                    };
                    edges.push((Action::Ignore, c, target));
                }
                if can_leave {
                    edges.push((Action::Proceed, self.proceed_cond(k), self.exit(k)));
                }
                edges.extend(s.nots_after.iter().map(stop));
            }
            Pos::Gate { step: k } => {
                let n = self.steps[k - 1].not_next_after.unwrap_or_default();
                // No stop state: an event satisfying the negation only ends the branch leaving
                // the previous step here, not the branches that take the event into it.
                let pass = Cond::not(Cond::Neg(n));
                if k < self.steps.len() {
                    edges.push((
                        Action::Proceed,
                        pass.clone(),
                        Pos::Entry {
                            step: k,
                            from: None,
                            committed: false,
                        },
                    ));
                }
                if self.steps[k..].iter().all(|s| s.optional) {
                    edges.push((Action::Ignore, pass, Pos::Final));
                }
            }
            Pos::Pending { from } => {
                edges.push((Action::Ignore, Cond::True, pos));
                edges.extend(self.steps[from].nots_after.iter().map(stop));
            }
            Pos::Final | Pos::Stop => {}
        }
        let edges = edges
            .into_iter()
            .map(|(action, cond, target)| Edge {
                action,
                cond,
                target: self.id(target),
            })
            .collect();
        self.states[me as usize].edges = edges;
    }
}

fn eager_end(states: &[State], mut id: StateId) -> Option<StateId> {
    // Unconditional proceed edges form chains, so a walk (bounded by the state count) suffices.
    for _ in 0..=states.len() {
        let s = &states[id as usize];
        if matches!(s.kind, StateKind::Final | StateKind::Pending) {
            return Some(id);
        }
        id = s
            .edges
            .iter()
            .find(|e| e.action == Action::Proceed && e.cond == Cond::True)?
            .target;
    }
    None
}

fn fingerprint<T>(states: &[State], steps: &[StepRt<T>], negs: &[NegRt<T>]) -> u64 {
    // FNV-1a over the structure: stable across processes (unlike `DefaultHasher`'s contract).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(states.len() as u64).to_le_bytes());
    for s in states {
        eat(s.name.as_bytes());
        eat(&(s.edges.len() as u64).to_le_bytes());
        for e in &s.edges {
            eat(&e.target.to_le_bytes());
        }
    }
    for s in steps {
        eat(s.name.as_bytes());
    }
    for n in negs {
        eat(n.name.as_bytes());
    }
    h
}
