//! Backpressure: how much of its time a task spends blocked sending to a full output
//! channel.
//!
//! An edge writer first tries to send without waiting; only when the channel is full does it
//! time the blocking send with [`BackPressure::blocked`]. The cumulative blocked time is a
//! counter; the ratio is the share of the last window (at least a second) spent blocked,
//! recomputed from the counter's delta whenever the task or a reader looks and a window has
//! passed. A send still blocked counts up to now, so a task stuck on a full channel reads 1.
//!
//! ```
//! use floe_runtime::metrics::BackPressure;
//! let p = BackPressure::new();
//! let v = p.blocked(|| 7);
//! assert_eq!(v, 7);
//! assert!(p.blocked_seconds() >= 0.0);
//! assert!((0.0..=1.0).contains(&p.ratio()));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Length of a window of the ratio, in ns.
const WINDOW_NS: u64 = 1_000_000_000;

/// Nanoseconds since the first call in this process (monotonic).
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One task's blocked time and its recent share; shared (in an `Arc`) by the task's edge
/// writers and the metrics that read it. Lock-free.
#[derive(Debug)]
pub struct BackPressure {
    /// Nanoseconds blocked in sends that have ended.
    blocked_nanos: AtomicU64,
    /// When the send under way started blocking (ns + 1), or 0.
    blocked_since: AtomicU64,
    /// Start of the current window (ns).
    window_start: AtomicU64,
    /// Blocked total at the start of the current window (ns).
    window_blocked: AtomicU64,
    /// The last window's ratio, as `f64` bits.
    ratio: AtomicU64,
}

impl Default for BackPressure {
    fn default() -> Self {
        Self::new()
    }
}

impl BackPressure {
    /// Nothing blocked yet; the first window starts now.
    pub fn new() -> Self {
        Self::starting_at(now_nanos())
    }

    fn starting_at(now: u64) -> Self {
        BackPressure {
            blocked_nanos: AtomicU64::new(0),
            blocked_since: AtomicU64::new(0),
            window_start: AtomicU64::new(now),
            window_blocked: AtomicU64::new(0),
            ratio: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Runs `send` (a send that blocks until the channel has room) and counts its time as
    /// blocked.
    pub fn blocked<R>(&self, send: impl FnOnce() -> R) -> R {
        let start = now_nanos();
        self.blocked_since.store(start + 1, Ordering::Relaxed);
        let r = send();
        let end = now_nanos();
        self.end_blocked(start, end);
        r
    }

    fn end_blocked(&self, start: u64, end: u64) {
        self.blocked_nanos
            .fetch_add(end.saturating_sub(start), Ordering::Relaxed);
        self.blocked_since.store(0, Ordering::Relaxed);
        self.tick_at(end);
    }

    /// Seconds spent blocked in sends that have ended.
    pub fn blocked_seconds(&self) -> f64 {
        self.blocked_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The share (0 to 1) of the last window spent blocked; starts a new window first if
    /// the current one is a second old.
    pub fn ratio(&self) -> f64 {
        self.tick_at(now_nanos());
        f64::from_bits(self.ratio.load(Ordering::Relaxed))
    }

    /// Closes the current window if it is at least a second old (cheap otherwise: one
    /// clock read and one atomic load). Tasks call it now and then so that the ratio stays
    /// recent without a reader.
    pub fn tick(&self) {
        self.tick_at(now_nanos());
    }

    /// Blocked time up to `now`, counting a send still under way.
    fn total_at(&self, now: u64) -> u64 {
        let done = self.blocked_nanos.load(Ordering::Relaxed);
        match self.blocked_since.load(Ordering::Relaxed) {
            0 => done,
            since => done + now.saturating_sub(since - 1),
        }
    }

    fn tick_at(&self, now: u64) {
        let start = self.window_start.load(Ordering::Relaxed);
        if now < start.saturating_add(WINDOW_NS) {
            return;
        }
        // One thread closes the window; the others leave it to that one.
        if self
            .window_start
            .compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let total = self.total_at(now);
        let before = self.window_blocked.swap(total, Ordering::AcqRel);
        let ratio = (total.saturating_sub(before) as f64 / (now - start) as f64).clamp(0.0, 1.0);
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ratio_now(p: &BackPressure) -> f64 {
        f64::from_bits(p.ratio.load(Ordering::Relaxed))
    }

    #[test]
    fn the_ratio_is_the_blocked_share_of_each_window() {
        let p = BackPressure::starting_at(0);
        p.end_blocked(100 * MS, 700 * MS);
        assert_eq!(ratio_now(&p), 0.0, "the first window is not over yet");
        p.tick_at(1_000 * MS);
        assert!((ratio_now(&p) - 0.6).abs() < 1e-9, "{}", ratio_now(&p));
        assert!((p.blocked_seconds() - 0.6).abs() < 1e-9);
        // A window with no blocking at all.
        p.tick_at(1_500 * MS);
        assert!((ratio_now(&p) - 0.6).abs() < 1e-9, "half a window: unchanged");
        p.tick_at(2_000 * MS);
        assert_eq!(ratio_now(&p), 0.0);
        // Blocked across two windows: each gets its part.
        p.blocked_since.store(2_500 * MS + 1, Ordering::Relaxed);
        p.tick_at(3_000 * MS);
        assert!((ratio_now(&p) - 0.5).abs() < 1e-9, "{}", ratio_now(&p));
        p.tick_at(4_000 * MS);
        assert!((ratio_now(&p) - 1.0).abs() < 1e-9, "still blocked: {}", ratio_now(&p));
        p.end_blocked(2_500 * MS, 4_200 * MS);
        p.tick_at(5_000 * MS);
        assert!((ratio_now(&p) - 0.2).abs() < 1e-9, "{}", ratio_now(&p));
        assert!((p.blocked_seconds() - 2.3).abs() < 1e-9);
    }

    #[test]
    fn a_long_quiet_spell_averages_over_its_length() {
        let p = BackPressure::starting_at(0);
        p.end_blocked(0, 500 * MS);
        p.tick_at(10_000 * MS);
        assert!((ratio_now(&p) - 0.05).abs() < 1e-9);
    }

    #[test]
    fn a_real_blocked_send_is_timed() {
        let p = std::sync::Arc::new(BackPressure::new());
        let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
        tx.send(1).unwrap();
        let watched = p.clone();
        let reader = std::thread::spawn(move || {
            // Once the send is under way, it stays blocked for at least 30 ms.
            while watched.blocked_since.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(30));
            (rx.recv().unwrap(), rx.recv().unwrap())
        });
        p.blocked(|| tx.send(2)).unwrap();
        assert_eq!(reader.join().unwrap(), (1, 2));
        assert!(
            p.blocked_nanos.load(Ordering::Relaxed) >= 30 * MS,
            "{}",
            p.blocked_seconds()
        );
    }
}
