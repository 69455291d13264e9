//! Random pattern specifications, shared by the engine (built into a `Pattern`) and the oracle
//! (interpreted directly).

use std::time::Duration;

use floe_operators::cep::{AfterMatchSkipStrategy, MatchContext, Pattern};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A test event: its position in the stream identifies it in matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ev {
    pub id: usize,
    pub kind: char,
    pub value: i32,
}

/// A condition; iterative ones refer to the events already matched to a positive step.
#[derive(Debug, Clone, PartialEq)]
pub enum CondSpec {
    Any,
    Kind(char),
    KindIn(char, char),
    KindValueLt(char, i32),
    ValueGe(i32),
    /// Kind `c` and a value above the last event matched to step `s` (any value if none).
    IncreasingOver(char, usize),
    /// Kind `c` and the values of step `s` plus this one stay below `lim`.
    SumBelow(char, usize, i32),
}

impl CondSpec {
    /// Evaluates the condition; `events_of(s)` gives the events matched so far to step `s`.
    pub fn eval<'a>(&self, e: &Ev, events_of: &dyn Fn(usize) -> Vec<&'a Ev>) -> bool {
        match *self {
            CondSpec::Any => true,
            CondSpec::Kind(c) => e.kind == c,
            CondSpec::KindIn(a, b) => e.kind == a || e.kind == b,
            CondSpec::KindValueLt(c, v) => e.kind == c && e.value < v,
            CondSpec::ValueGe(v) => e.value >= v,
            CondSpec::IncreasingOver(c, s) => e.kind == c && events_of(s).last().is_none_or(|l| l.value < e.value),
            CondSpec::SumBelow(c, s, lim) => {
                e.kind == c && events_of(s).iter().map(|x| x.value).sum::<i32>() + e.value < lim
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contig {
    Strict,
    Relaxed,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    One,
    Times(u32),
    Range(u32, u32),
    OneOrMore,
    TimesOrMore(u32),
}

impl Quant {
    /// `(optional because of a zero minimum, min, max)`.
    pub fn bounds(self) -> (bool, u32, Option<u32>) {
        match self {
            Quant::One => (false, 1, Some(1)),
            Quant::Times(n) => (false, n, Some(n)),
            Quant::Range(0, m) => (true, 1, Some(m)),
            Quant::Range(n, m) => (false, n, Some(m)),
            Quant::OneOrMore => (false, 1, None),
            Quant::TimesOrMore(n) => (false, n, None),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NegSpec {
    NotNext(CondSpec),
    NotFollowedBy(CondSpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub cond: CondSpec,
    /// Contiguity with the previous step (ignored for the first step).
    pub outer: Contig,
    pub quant: Quant,
    pub optional: bool,
    pub greedy: bool,
    /// Inner contiguity; `None`: the default (relaxed).
    pub inner: Option<Contig>,
    pub until: Option<CondSpec>,
    /// Negations right after this step.
    pub negs: Vec<NegSpec>,
}

impl StepSpec {
    pub fn min(&self) -> u32 {
        self.quant.bounds().1
    }
    pub fn max(&self) -> Option<u32> {
        self.quant.bounds().2
    }
    pub fn is_optional(&self) -> bool {
        self.optional || self.quant.bounds().0
    }
    pub fn inner_contig(&self) -> Contig {
        self.inner.unwrap_or(Contig::Relaxed)
    }
    pub fn not_next(&self) -> Option<&CondSpec> {
        self.negs.iter().find_map(|n| match n {
            NegSpec::NotNext(c) => Some(c),
            NegSpec::NotFollowedBy(_) => None,
        })
    }
    pub fn not_followed_by(&self) -> impl Iterator<Item = &CondSpec> {
        self.negs.iter().filter_map(|n| match n {
            NegSpec::NotFollowedBy(c) => Some(c),
            NegSpec::NotNext(_) => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SkipSpec {
    NoSkip,
    ToNext,
    PastLast,
    ToFirst(usize),
    ToLast(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatternSpec {
    pub steps: Vec<StepSpec>,
    pub within: Option<i64>,
    pub skip: SkipSpec,
    /// Steps `g..h` are built as a group (which must not change the semantics).
    pub group: Option<(usize, usize)>,
}

pub fn step_name(i: usize) -> String {
    format!("s{i}")
}

fn neg_name(step: usize, j: usize) -> String {
    format!("n{step}_{j}")
}

impl PatternSpec {
    /// Makes a random spec valid for the engine (the restrictions it documents).
    pub fn sanitize(mut self) -> Self {
        let n = self.steps.len();
        for i in 0..n {
            let next_mandatory_plain = i + 1 < n && !self.steps[i + 1].is_optional();
            let s = &mut self.steps[i];
            let (_, min, max) = s.quant.bounds();
            if max.is_some() {
                s.until = None;
            }
            if max == Some(1) {
                s.inner = None;
            }
            if !s.negs.is_empty() && s.is_optional() {
                s.optional = false;
                if let Quant::Range(0, m) = s.quant {
                    s.quant = Quant::Range(1, m);
                }
            }
            // `not_next` must not be next to another negation.
            if s.negs.len() > 1 {
                s.negs.retain(|n| matches!(n, NegSpec::NotFollowedBy(_)));
            }
            let variable = s.is_optional() || max != Some(min);
            if s.greedy && !(variable && s.until.is_none() && next_mandatory_plain && s.negs.is_empty()) {
                s.greedy = false;
            }
        }
        let trailing_not = (0..n).any(|i| {
            self.steps[i].not_followed_by().next().is_some() && self.steps[i + 1..].iter().all(StepSpec::is_optional)
        });
        if trailing_not && self.within.is_none() {
            self.within = Some(5);
        }
        self.group = self
            .group
            .map(|(a, b)| (a % n, b % n))
            .map(|(a, b)| (a.min(b), a.max(b) + 1));
        let fix = |i: usize| i % n;
        self.skip = match self.skip {
            SkipSpec::ToFirst(i) => SkipSpec::ToFirst(fix(i)),
            SkipSpec::ToLast(i) => SkipSpec::ToLast(fix(i)),
            s => s,
        };
        for s in &mut self.steps {
            for c in std::iter::once(&mut s.cond).chain(s.until.as_mut()) {
                if let CondSpec::IncreasingOver(_, r) | CondSpec::SumBelow(_, r, _) = c {
                    *r = fix(*r);
                }
            }
        }
        self
    }

    /// Builds the engine's pattern.
    pub fn build(&self) -> Pattern<Ev> {
        let n = self.steps.len();
        let (g, h) = self.group.unwrap_or((n, n));
        let mut p: Option<Pattern<Ev>> = None;
        for i in 0..n {
            if i == g {
                let mut inner = None;
                for j in g..h {
                    inner = Some(self.add_step(inner, j));
                }
                let Some(inner) = inner else { continue };
                p = Some(match p {
                    None => Pattern::begin_group(inner),
                    Some(p) => match self.steps[g].outer {
                        Contig::Strict => p.next_group(inner),
                        Contig::Relaxed => p.followed_by_group(inner),
                        Contig::Any => p.followed_by_any_group(inner),
                    },
                });
            } else if i < g || i >= h {
                p = Some(self.add_step(p, i));
            }
        }
        let skip = match &self.skip {
            SkipSpec::NoSkip => AfterMatchSkipStrategy::NoSkip,
            SkipSpec::ToNext => AfterMatchSkipStrategy::SkipToNext,
            SkipSpec::PastLast => AfterMatchSkipStrategy::SkipPastLastEvent,
            SkipSpec::ToFirst(i) => AfterMatchSkipStrategy::SkipToFirst(step_name(*i)),
            SkipSpec::ToLast(i) => AfterMatchSkipStrategy::SkipToLast(step_name(*i)),
        };
        let mut p = p.expect("at least one step").skip(skip);
        if let Some(w) = self.within {
            p = p.within(Duration::from_millis(w as u64));
        }
        p
    }

    /// Appends step `i` to `p` (or begins a pattern with it).
    fn add_step(&self, p: Option<Pattern<Ev>>, i: usize) -> Pattern<Ev> {
        let s = &self.steps[i];
        let name = step_name(i);
        let mut p = match p {
            None => Pattern::begin(&name),
            Some(p) => match s.outer {
                Contig::Strict => p.next(&name),
                Contig::Relaxed => p.followed_by(&name),
                Contig::Any => p.followed_by_any(&name),
            },
        };
        p = with_cond(p, &s.cond);
        p = match s.quant {
            Quant::One => p,
            Quant::Times(n) => p.times(n),
            Quant::Range(a, b) => p.times_range(a, b),
            Quant::OneOrMore => p.one_or_more(),
            Quant::TimesOrMore(n) => p.times_or_more(n),
        };
        if s.optional {
            p = p.optional();
        }
        if s.greedy {
            p = p.greedy();
        }
        p = match s.inner {
            None | Some(Contig::Relaxed) => p,
            Some(Contig::Strict) => p.consecutive(),
            Some(Contig::Any) => p.allow_combinations(),
        };
        if let Some(u) = &s.until {
            let u = u.clone();
            p = p.until(move |e| u.eval(e, &|_| Vec::new()));
        }
        for (j, neg) in s.negs.iter().enumerate() {
            let (q, c) = match neg {
                NegSpec::NotNext(c) => (p.not_next(&neg_name(i, j)), c),
                NegSpec::NotFollowedBy(c) => (p.not_followed_by(&neg_name(i, j)), c),
            };
            p = with_cond(q, c);
        }
        p
    }
}

/// Adds `c` to the last step: as a plain condition when it does not look at the partial
/// match (so that patterns the engine may filter events for are generated too), else as an
/// iterative one.
fn with_cond(p: Pattern<Ev>, c: &CondSpec) -> Pattern<Ev> {
    match c {
        CondSpec::IncreasingOver(..) | CondSpec::SumBelow(..) => p.where_iter(cond_fn(c.clone())),
        plain => {
            let plain = plain.clone();
            p.where_(move |e| plain.eval(e, &|_| Vec::new()))
        }
    }
}

fn cond_fn(c: CondSpec) -> impl Fn(&Ev, &MatchContext<'_, Ev>) -> bool + Send + Sync + 'static {
    move |e, ctx| c.eval(e, &|s| ctx.events(&step_name(s)).collect())
}

// ---- strategies ----

pub fn arb_cond() -> impl Strategy<Value = CondSpec> {
    let kind = prop::sample::select(vec!['a', 'b', 'c']);
    prop_oneof![
        3 => kind.clone().prop_map(CondSpec::Kind),
        1 => (kind.clone(), kind.clone()).prop_map(|(a, b)| CondSpec::KindIn(a, b)),
        1 => (kind.clone(), 1..4i32).prop_map(|(a, v)| CondSpec::KindValueLt(a, v)),
        1 => (1..4i32).prop_map(CondSpec::ValueGe),
        1 => Just(CondSpec::Any),
        1 => (kind.clone(), 0..4usize).prop_map(|(a, s)| CondSpec::IncreasingOver(a, s)),
        1 => (kind, 0..4usize, 3..9i32).prop_map(|(a, s, l)| CondSpec::SumBelow(a, s, l)),
    ]
}

pub fn arb_contig() -> impl Strategy<Value = Contig> {
    prop_oneof![1 => Just(Contig::Strict), 2 => Just(Contig::Relaxed), 1 => Just(Contig::Any)]
}

pub fn arb_quant() -> impl Strategy<Value = Quant> {
    prop_oneof![
        4 => Just(Quant::One),
        1 => (2..4u32).prop_map(Quant::Times),
        1 => (0..2u32, 2..4u32).prop_map(|(a, b)| Quant::Range(a, b)),
        2 => Just(Quant::OneOrMore),
        1 => Just(Quant::TimesOrMore(2)),
    ]
}

pub fn arb_neg() -> impl Strategy<Value = Vec<NegSpec>> {
    prop_oneof![
        6 => Just(Vec::new()),
        1 => arb_cond().prop_map(|c| vec![NegSpec::NotNext(c)]),
        2 => arb_cond().prop_map(|c| vec![NegSpec::NotFollowedBy(c)]),
        1 => (arb_cond(), arb_cond()).prop_map(|(a, b)| vec![NegSpec::NotFollowedBy(a), NegSpec::NotFollowedBy(b)]),
    ]
}

pub fn arb_step(negations: bool) -> impl Strategy<Value = StepSpec> {
    let negs = if negations {
        arb_neg().boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        arb_cond(),
        arb_contig(),
        arb_quant(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.4, arb_contig()),
        prop::option::weighted(0.2, arb_cond()),
        negs,
    )
        .prop_map(|(cond, outer, quant, optional, greedy, inner, until, negs)| StepSpec {
            cond,
            outer,
            quant,
            optional,
            greedy,
            inner,
            until,
            negs,
        })
}

pub fn arb_skip() -> impl Strategy<Value = SkipSpec> {
    prop_oneof![
        Just(SkipSpec::NoSkip),
        Just(SkipSpec::ToNext),
        Just(SkipSpec::PastLast),
        (0..4usize).prop_map(SkipSpec::ToFirst),
        (0..4usize).prop_map(SkipSpec::ToLast),
    ]
}

pub fn arb_pattern(
    max_steps: usize,
    negations: bool,
    skip: BoxedStrategy<SkipSpec>,
    within: BoxedStrategy<Option<i64>>,
) -> impl Strategy<Value = PatternSpec> {
    let group = prop::option::weighted(0.3, (0..4usize, 0..4usize));
    (
        prop::collection::vec(arb_step(negations), 1..=max_steps),
        within,
        skip,
        group,
    )
        .prop_map(|(steps, within, skip, group)| {
            PatternSpec {
                steps,
                within,
                skip,
                group,
            }
            .sanitize()
        })
}

/// Events with non-decreasing timestamps (ties allowed).
pub fn arb_events(max_len: usize) -> impl Strategy<Value = Vec<(Ev, i64)>> {
    let kind = prop::sample::select(vec!['a', 'a', 'b', 'b', 'c', 'd']);
    prop::collection::vec((kind, 0..4i32, 0..3i64), 0..=max_len).prop_map(|v| {
        let mut ts = 0;
        v.into_iter()
            .enumerate()
            .map(|(id, (kind, value, dt))| {
                ts += dt;
                (Ev { id, kind, value }, ts)
            })
            .collect()
    })
}
