//! Connections a worker refuses: why (a [`Reason`], counted in
//! `floe_net_rejected_connections_total{reason}`), and a log line per reason at most every
//! ten seconds, so that a flood of connections is visible without flooding the log.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::codec::FrameTooLarge;

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The handshake did not finish within its deadline (a silent or slow peer).
    Timeout,
    /// The peer closed the connection during the handshake.
    Closed,
    /// A frame longer than the handshake allows.
    Oversized,
    /// An answer that is not `hello ‖ nonce ‖ MAC`.
    Malformed,
    /// The MAC does not prove the attempt's secret (not a worker, or one of another attempt).
    BadMac,
    /// Authenticated, but names a channel or worker this worker does not expect.
    Unexpected,
    /// Authenticated, for a channel already connected.
    Duplicate,
    /// Too many handshakes in progress: closed at once.
    Busy,
    /// The worker we connected to did not prove the attempt's secret.
    Impostor,
    /// Another I/O error during the handshake.
    Io,
    /// This worker could not take part (no random bytes); not the peer's doing.
    Internal,
    /// The job was cancelled during the handshake; not counted.
    Cancelled,
}

impl Reason {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Closed => "closed",
            Reason::Oversized => "oversized",
            Reason::Malformed => "malformed",
            Reason::BadMac => "bad_mac",
            Reason::Unexpected => "unexpected",
            Reason::Duplicate => "duplicate",
            Reason::Busy => "busy",
            Reason::Impostor => "impostor",
            Reason::Io => "io",
            Reason::Internal => "internal",
            Reason::Cancelled => "cancelled",
        }
    }

    const ALL: [Reason; 12] = [
        Reason::Timeout,
        Reason::Closed,
        Reason::Oversized,
        Reason::Malformed,
        Reason::BadMac,
        Reason::Unexpected,
        Reason::Duplicate,
        Reason::Busy,
        Reason::Impostor,
        Reason::Io,
        Reason::Internal,
        Reason::Cancelled,
    ];

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A refused handshake: the reason and what happened.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) detail: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }

    /// An I/O error while `doing`, by its kind.
    pub(crate) fn io(doing: &str, e: &io::Error) -> Self {
        let reason = if e.get_ref().is_some_and(|i| i.is::<FrameTooLarge>()) {
            Reason::Oversized
        } else {
            match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Reason::Timeout,
                io::ErrorKind::Interrupted => Reason::Cancelled,
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Reason::Closed,
                io::ErrorKind::InvalidData => Reason::Malformed,
                _ => Reason::Io,
            }
        };
        Refusal::new(reason, format!("{doing}: {e}"))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason.label())
    }
}

/// Counts and (rate-limited) logs a refused connection from `peer`.
pub(crate) fn rejected(peer: SocketAddr, refusal: &Refusal) {
    if refusal.reason == Reason::Cancelled {
        return;
    }
    crate::metrics::net::rejected_connection(refusal.reason.label());
    static LIMITS: Mutex<[RateLimit; Reason::ALL.len()]> = Mutex::new([RateLimit::EVERY_10S; Reason::ALL.len()]);
    let shown = LIMITS
        .lock()
        .map(|mut l| l[refusal.reason.index()].allow(Instant::now()))
        .unwrap_or(Some(0));
    if let Some(suppressed) = shown {
        tracing::warn!(
            %peer,
            reason = refusal.reason.label(),
            suppressed,
            "refused a connection to this worker: {} (counted in floe_net_rejected_connections_total; `suppressed` more of this reason since the last such line)",
            refusal.detail
        );
    }
}

/// At most one line per period; counts what it holds back.
#[derive(Clone, Copy, Debug)]
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    const EVERY_10S: RateLimit = RateLimit {
        every: Duration::from_secs(10),
        last: None,
        suppressed: 0,
    };

    /// `Some(lines held back since the last one)` if a line may be written at `now`.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let mut l = RateLimit::EVERY_10S;
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(25)), Some(1));
    }

    #[test]
    fn io_errors_map_to_reasons() {
        let e = |k| io::Error::new(k, "x");
        assert_eq!(Refusal::io("", &e(io::ErrorKind::TimedOut)).reason, Reason::Timeout);
        assert_eq!(Refusal::io("", &e(io::ErrorKind::UnexpectedEof)).reason, Reason::Closed);
        assert_eq!(
            Refusal::io("", &e(io::ErrorKind::Interrupted)).reason,
            Reason::Cancelled
        );
        let big = io::Error::new(io::ErrorKind::InvalidData, FrameTooLarge { len: 9, max: 1 });
        assert_eq!(Refusal::io("", &big).reason, Reason::Oversized);
        assert!(Reason::ALL.iter().enumerate().all(|(i, r)| r.index() == i));
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let count = |r: &str| {
            crate::metrics::Registry::global()
                .value("floe_net_rejected_connections_total", &[("reason", r)])
                .unwrap_or(0.0)
        };
        // No other test refuses for these reasons.
        let (internal, cancelled) = (count("internal"), count("cancelled"));
        rejected(peer, &Refusal::new(Reason::Internal, "test"));
        rejected(peer, &Refusal::new(Reason::Internal, "test"));
        rejected(peer, &Refusal::new(Reason::Cancelled, "test"));
        assert_eq!(count("internal") - internal, 2.0);
        assert_eq!(
            count("cancelled"),
            cancelled,
            "a cancelled job's handshakes are not refusals"
        );
    }
}
