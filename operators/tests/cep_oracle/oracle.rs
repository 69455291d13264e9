//! A brute-force oracle for the CEP engine, written from the declarative semantics in the
//! module docs of `floe_operators::cep`, not from its NFA.
//!
//! 1. A depth-first search enumerates every *valid prefix*: an assignment of events to steps
//!    (a subsequence, steps in order) where each newly placed event satisfies the rules that are
//!    decidable once it is placed (condition, until, contiguity with the previous event of the
//!    match, window, negations armed over the gap, greedy gaps).
//! 2. For each prefix it decides declaratively how the match could go on ("modes": more events
//!    of the same step, the first event of a later step, a pending trailing negation), and the
//!    first later event that no mode can skip.
//! 3. A time-stepped simulation (before each event, at each event, final watermark) derives
//!    completions, timeouts and the after-match skip strategy with Flink's holding back.

use super::spec::{CondSpec, Contig, Ev, PatternSpec, SkipSpec, StepSpec};

/// A match as `(step, event index)` pairs in order.
pub type Path = Vec<(usize, usize)>;

#[derive(Debug, Default)]
pub struct OracleOut {
    pub matches: Vec<Path>,
    /// Timed-out partial matches with their timeout timestamp.
    pub timed_out: Vec<(Path, i64)>,
}

const NEVER: usize = usize::MAX;

fn before(i: usize) -> usize {
    2 * i
}
fn at(i: usize) -> usize {
    2 * i + 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModeKind {
    Waiting,
    Pending,
}

#[derive(Debug)]
struct Prefix {
    path: Path,
    start: usize,
    last: usize,
    /// Time point at which it completes as a match (not for pending ones), or `NEVER`.
    complete_at: usize,
    /// Time point at which its window passes, or `NEVER`.
    timeout_at: usize,
    /// Ways to go on, each with the time point at which it dies.
    modes: Vec<(ModeKind, usize)>,
}

impl Prefix {
    fn alive_at(&self, t: usize) -> bool {
        t >= at(self.last) && t < self.timeout_at && self.modes.iter().any(|&(_, d)| d > t)
    }
}

struct Oracle<'a> {
    p: &'a PatternSpec,
    evs: &'a [Ev],
    ts: &'a [i64],
    final_watermark: i64,
}

impl Oracle<'_> {
    fn step(&self, k: usize) -> &StepSpec {
        &self.p.steps[k]
    }

    /// Evaluates `c` on event `z` in the context of the events of `prefix`.
    fn eval(&self, c: &CondSpec, z: usize, prefix: &[(usize, usize)]) -> bool {
        let evs = self.evs;
        c.eval(&evs[z], &|s| {
            prefix
                .iter()
                .filter(|(st, _)| *st == s)
                .map(|(_, i)| &evs[*i])
                .collect()
        })
    }

    fn until(&self, k: usize, z: usize) -> bool {
        self.step(k)
            .until
            .as_ref()
            .is_some_and(|u| u.eval(&self.evs[z], &|_| Vec::new()))
    }

    /// Whether event `y` may be placed into step `k` after `prefix` (whose steps are `<= k`, and
    /// all steps strictly between its last step and `k` optional).
    fn can_place(&self, prefix: &[(usize, usize)], k: usize, y: usize) -> bool {
        let s = self.step(k);
        if !self.eval(&s.cond, y, prefix) || self.until(k, y) {
            return false;
        }
        let Some(&(j, x)) = prefix.last() else {
            // A greedy step cannot be skipped at an event it could take, even at the start.
            return k == 0 || !self.step(k - 1).greedy || !self.eval(&self.step(k - 1).cond, y, prefix);
        };
        let start = prefix[0].1;
        if let Some(w) = self.p.within {
            if self.ts[y] - self.ts[start] >= w {
                return false;
            }
        }
        let first_of_k = j != k;
        let gap = x + 1..y;
        let contiguity = if first_of_k { s.outer } else { s.inner_contig() };
        let gap_ok = match contiguity {
            Contig::Strict => y == x + 1,
            Contig::Relaxed => gap
                .clone()
                .all(|z| !self.eval(&s.cond, z, prefix) && (first_of_k || !self.until(k, z))),
            Contig::Any => first_of_k || gap.clone().all(|z| !self.until(k, z)),
        };
        if !gap_ok {
            return false;
        }
        // not_followed_by after step j: armed from j's first event to the next step's first.
        let through_y = x + 1..=y;
        for n in self.step(j).not_followed_by() {
            if through_y.clone().any(|z| self.eval(n, z, prefix)) {
                return false;
            }
        }
        if first_of_k {
            if let Some(n) = self.step(j).not_next() {
                if self.eval(n, x + 1, prefix) {
                    return false;
                }
            }
            if k > 0 && self.step(k - 1).greedy {
                let g = &self.step(k - 1).cond;
                if through_y.clone().any(|z| self.eval(g, z, prefix)) {
                    return false;
                }
            }
        }
        true
    }

    fn first_kill(&self, x: usize, survives: impl Fn(usize) -> bool) -> usize {
        (x + 1..self.evs.len()).find(|&z| !survives(z)).map_or(NEVER, at)
    }

    fn describe(&self, path: &Path) -> Prefix {
        let n_steps = self.p.steps.len();
        let &(j, x) = path.last().expect("non-empty prefix");
        let start = path[0].1;
        let c = path.iter().filter(|(s, _)| *s == j).count() as u32;
        let sj = self.step(j);
        let rest_optional = |from: usize| self.p.steps[from..].iter().all(StepSpec::is_optional);
        let timeout_at = match self.p.within {
            None => NEVER,
            Some(w) => (x + 1..self.evs.len())
                .find(|&i| self.ts[i] - self.ts[start] >= w)
                .map(before)
                .unwrap_or(if self.final_watermark - self.ts[start] >= w {
                    before(self.evs.len())
                } else {
                    NEVER
                }),
        };
        let nots: Vec<&CondSpec> = sj.not_followed_by().collect();
        let no_not = |z: usize| nots.iter().all(|n| !self.eval(n, z, path));
        let mut modes = Vec::new();
        let mut complete_at = NEVER;
        // More events of step j.
        if sj.max().is_none_or(|m| c < m) {
            let survives = |z| {
                no_not(z)
                    && match sj.inner_contig() {
                        Contig::Strict => false,
                        Contig::Relaxed => !self.eval(&sj.cond, z, path) && !self.until(j, z),
                        Contig::Any => !self.until(j, z),
                    }
            };
            modes.push((ModeKind::Waiting, self.first_kill(x, survives)));
        }
        if c >= sj.min() {
            let gate = sj.not_next();
            let gate_ok = |z: usize| gate.is_none_or(|n| z != x + 1 || !self.eval(n, z, path));
            // The first event of a later step k (steps in between optional).
            for k in j + 1..n_steps {
                let sk = self.step(k);
                let survives = |z| {
                    gate_ok(z)
                        && no_not(z)
                        && (k == 0 || !self.step(k - 1).greedy || !self.eval(&self.step(k - 1).cond, z, path))
                        && match sk.outer {
                            Contig::Strict => false,
                            Contig::Relaxed => !self.eval(&sk.cond, z, path),
                            Contig::Any => true,
                        }
                };
                modes.push((ModeKind::Waiting, self.first_kill(x, survives)));
                if !sk.is_optional() {
                    break;
                }
            }
            if rest_optional(j + 1) {
                if let Some(n) = gate {
                    // Completed by the next event if it does not satisfy the negation.
                    modes.push((
                        ModeKind::Waiting,
                        if x + 1 < self.evs.len() { at(x + 1) } else { NEVER },
                    ));
                    if x + 1 < self.evs.len() && !self.eval(n, x + 1, path) && at(x + 1) < timeout_at {
                        complete_at = at(x + 1);
                    }
                } else if !nots.is_empty() {
                    modes.push((ModeKind::Pending, self.first_kill(x, no_not)));
                } else {
                    complete_at = at(x);
                }
            }
        }
        Prefix {
            path: path.clone(),
            start,
            last: x,
            complete_at,
            timeout_at,
            modes,
        }
    }

    fn dfs(&self, path: &mut Path, out: &mut Vec<Prefix>) {
        out.push(self.describe(path));
        let &(j, x) = path.last().expect("non-empty prefix");
        let c = path.iter().filter(|(s, _)| *s == j).count() as u32;
        let sj = self.step(j);
        for y in x + 1..self.evs.len() {
            if sj.max().is_none_or(|m| c < m) && self.can_place(path, j, y) {
                path.push((j, y));
                self.dfs(path, out);
                path.pop();
            }
            if c >= sj.min() {
                for k in j + 1..self.p.steps.len() {
                    if self.can_place(path, k, y) {
                        path.push((k, y));
                        self.dfs(path, out);
                        path.pop();
                    }
                    if !self.step(k).is_optional() {
                        break;
                    }
                }
            }
        }
    }

    fn prefixes(&self) -> Vec<Prefix> {
        let mut out = Vec::new();
        for y in 0..self.evs.len() {
            for k in 0..self.p.steps.len() {
                if self.can_place(&[], k, y) {
                    self.dfs(&mut vec![(k, y)], &mut out);
                }
                if !self.step(k).is_optional() {
                    break;
                }
            }
        }
        out
    }

    /// Start-inclusive pruning point of an emitted match: `(event, inclusive)`.
    fn pruning(&self, m: &Path) -> Option<(usize, bool)> {
        match self.p.skip {
            SkipSpec::NoSkip => None,
            SkipSpec::ToNext => m.first().map(|&(_, i)| (i, true)),
            SkipSpec::PastLast => m.last().map(|&(_, i)| (i, true)),
            SkipSpec::ToFirst(s) => m.iter().find(|(st, _)| *st == s).map(|&(_, i)| (i, false)),
            SkipSpec::ToLast(s) => m.iter().rev().find(|(st, _)| *st == s).map(|&(_, i)| (i, false)),
        }
    }

    fn run(&self) -> OracleOut {
        let prefixes = self.prefixes();
        let n = self.evs.len();
        let mut out = OracleOut::default();
        let mut pruned = vec![false; n];
        let mut queue: Vec<&Prefix> = Vec::new();
        for t in 0..=before(n) {
            let mut new: Vec<&Prefix> = Vec::new();
            for p in prefixes.iter().filter(|p| !pruned[p.start]) {
                if p.timeout_at == t {
                    let alive = |kind| p.modes.iter().any(|&(k, d)| k == kind && d > t);
                    if alive(ModeKind::Waiting) {
                        let w = self.p.within.unwrap_or(0);
                        out.timed_out.push((p.path.clone(), self.ts[p.start] + w));
                    }
                    if alive(ModeKind::Pending) {
                        new.push(p);
                    }
                }
                if p.complete_at == t {
                    new.push(p);
                }
            }
            new.sort_by_key(|a| (a.start, key(&a.path)));
            if self.p.skip == SkipSpec::NoSkip {
                out.matches.extend(new.into_iter().map(|p| p.path.clone()));
                continue;
            }
            queue.extend(new);
            queue.sort_by_key(|p| p.start);
            while let Some(head) = queue.first() {
                let earliest_partial = prefixes
                    .iter()
                    .filter(|p| !pruned[p.start] && p.alive_at(t))
                    .map(|p| p.start)
                    .min();
                if earliest_partial.is_some_and(|s| s < head.start) {
                    break;
                }
                let head = queue.remove(0);
                out.matches.push(head.path.clone());
                if let Some((point, inclusive)) = self.pruning(&head.path) {
                    for (s, p) in pruned.iter_mut().enumerate() {
                        if s < point || (inclusive && s == point) {
                            *p = true;
                        }
                    }
                    queue.retain(|p| !pruned[p.start]);
                }
            }
        }
        out
    }
}

/// Order of matches completing together with the same first event: shorter first, then by
/// their `(event, step)` sequences.
fn key(path: &Path) -> (usize, Vec<(usize, usize)>) {
    (path.len(), path.iter().map(|&(s, i)| (i, s)).collect())
}

/// Runs the oracle over events `evs` (with timestamps `ts`), then a final watermark.
pub fn oracle(p: &PatternSpec, evs: &[Ev], ts: &[i64], final_watermark: i64) -> OracleOut {
    Oracle {
        p,
        evs,
        ts,
        final_watermark,
    }
    .run()
}
