//! Rate-limited warnings: a bad record per microsecond must not become a log line each.

use std::time::{Duration, Instant};

/// At most one warning of each kind per this long (the rest are counted).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counts warnings of one kind and lets one through per [`WARN_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(n)` when a warning may be logged now (`n` were suppressed since the last).
    pub(crate) fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= WARN_EVERY) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
