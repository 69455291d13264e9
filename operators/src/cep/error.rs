//! Errors of the CEP engine: pattern validation (the user's fault, never retryable) and misuse
//! of the per-key engine (out-of-order input or state from another pattern: the caller's fault).

use std::fmt;

/// What went wrong while compiling a [`Pattern`](super::Pattern) or running an [`Nfa`](super::Nfa).
///
/// Every variant is a caller error: retrying the same call does not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CepError {
    /// The pattern is malformed; the message names the offending step.
    InvalidPattern(String),
    /// The pattern uses a feature this engine does not support (yet).
    Unsupported(String),
    /// An event was older than the previous event or the last watermark of the key: events must
    /// be fed in event-time order, and late events dropped by the caller.
    LateEvent {
        /// Timestamp of the rejected event.
        timestamp: i64,
        /// The time the key had already reached.
        current_time: i64,
    },
    /// The [`NfaState`](super::NfaState) was built by a different compiled pattern.
    IncompatibleState,
}

impl CepError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        CepError::InvalidPattern(msg.into())
    }
}

impl fmt::Display for CepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CepError::InvalidPattern(m) => write!(f, "invalid CEP pattern (user error): {m}"),
            CepError::Unsupported(m) => write!(f, "unsupported CEP pattern feature (user error): {m}"),
            CepError::LateEvent {
                timestamp,
                current_time,
            } => write!(
                f,
                "CEP event at {timestamp} is older than the key's current time {current_time}; \
                 events must be fed in event-time order (caller error, not retryable)"
            ),
            CepError::IncompatibleState => {
                write!(
                    f,
                    "CEP state was created by a different pattern (caller error, not retryable)"
                )
            }
        }
    }
}

impl std::error::Error for CepError {}

/// Result alias of the CEP engine.
pub type Result<T, E = CepError> = std::result::Result<T, E>;
