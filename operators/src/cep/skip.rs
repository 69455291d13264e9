//! After-match skip strategies: which partial and completed matches an emitted match discards.
//!
//! As in Flink, a strategy yields a *pruning point* (an event of the emitted match) and discards
//! every partial or held-back match whose first event is before it (`SkipToFirst`, `SkipToLast`)
//! or at or before it (`SkipToNext`, `SkipPastLastEvent`).

use super::compiler::SkipRt;

/// Where to prune: the input position (`seq`) of an event and whether a match starting exactly
/// there is discarded too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PruningPoint {
    seq: u64,
    inclusive: bool,
}

impl PruningPoint {
    /// Whether a match that started at input position `start_seq` must be discarded.
    pub(crate) fn prunes(self, start_seq: u64) -> bool {
        start_seq < self.seq || (self.inclusive && start_seq == self.seq)
    }
}

/// The pruning point of an emitted match given as `(step, seq)` pairs in match order, or `None`
/// if nothing is to be discarded.
pub(crate) fn pruning_point(skip: SkipRt, path: &[(u16, u64)]) -> Option<PruningPoint> {
    let of_step = |step: u16| path.iter().filter(move |(s, _)| *s == step).map(|(_, seq)| *seq);
    let (seq, inclusive) = match skip {
        SkipRt::NoSkip => return None,
        SkipRt::ToNext => (path.first()?.1, true),
        SkipRt::PastLast => (path.last()?.1, true),
        SkipRt::ToFirst(step) => (of_step(step).next()?, false),
        SkipRt::ToLast(step) => (of_step(step).next_back()?, false),
    };
    Some(PruningPoint { seq, inclusive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_points() {
        let path = [(0, 3), (1, 5), (1, 7), (2, 9)];
        let p = |s| pruning_point(s, &path);
        assert_eq!(p(SkipRt::NoSkip), None);
        assert!(p(SkipRt::ToNext).is_some_and(|p| p.prunes(3) && !p.prunes(4)));
        assert!(p(SkipRt::PastLast).is_some_and(|p| p.prunes(9) && !p.prunes(10)));
        assert!(p(SkipRt::ToFirst(1)).is_some_and(|p| p.prunes(4) && !p.prunes(5)));
        assert!(p(SkipRt::ToLast(1)).is_some_and(|p| p.prunes(6) && !p.prunes(7)));
        assert_eq!(p(SkipRt::ToLast(3)), None);
    }
}
