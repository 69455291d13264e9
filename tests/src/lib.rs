//! Helpers for Floe's end-to-end tests: naive oracles that the engine's results are compared
//! with.

use std::collections::BTreeMap;

/// Count and sum per (key, window start, window end), computed naively from all events.
pub type WindowTotals = BTreeMap<(u32, i64, i64), (u64, i64)>;

/// Tumbling or sliding windows of `size` every `slide` (ms): the oracle.
pub fn sliding_oracle(events: &[(u32, i64, i64)], size: i64, slide: i64) -> WindowTotals {
    let mut out = WindowTotals::new();
    for &(key, ts, value) in events {
        let last_start = ts - ts.rem_euclid(slide);
        let mut start = last_start;
        while start > ts - size {
            let e = out.entry((key, start, start + size)).or_default();
            e.0 += 1;
            e.1 += value;
            start -= slide;
        }
    }
    out
}

/// Session windows with `gap` (ms): per key, events sorted by time, a new session whenever
/// the next event is more than `gap` after the previous one (windows that touch merge, as in
/// Flink); a session is [first, last + gap).
pub fn session_oracle(events: &[(u32, i64, i64)], gap: i64) -> WindowTotals {
    let mut by_key: BTreeMap<u32, Vec<(i64, i64)>> = BTreeMap::new();
    for &(key, ts, value) in events {
        by_key.entry(key).or_default().push((ts, value));
    }
    let mut out = WindowTotals::new();
    for (key, mut evs) in by_key {
        evs.sort();
        let mut i = 0;
        while i < evs.len() {
            let (first, mut last) = (evs[i].0, evs[i].0);
            let (mut n, mut sum) = (0u64, 0i64);
            while i < evs.len() && evs[i].0 <= last + gap {
                last = evs[i].0;
                n += 1;
                sum += evs[i].1;
                i += 1;
            }
            out.insert((key, first, last + gap), (n, sum));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracles_by_hand() {
        let evs = [(1, 0, 1), (1, 4, 2), (1, 12, 3), (2, 5, 10)];
        let t = sliding_oracle(&evs, 10, 10);
        assert_eq!(t[&(1, 0, 10)], (2, 3));
        assert_eq!(t[&(1, 10, 20)], (1, 3));
        let s = sliding_oracle(&evs, 10, 5);
        assert_eq!(s[&(1, -5, 5)], (2, 3));
        assert_eq!(s[&(1, 5, 15)], (1, 3));
        let g = session_oracle(&evs, 5);
        assert_eq!(g[&(1, 0, 9)], (2, 3));
        assert_eq!(g[&(1, 12, 17)], (1, 3));
    }
}
