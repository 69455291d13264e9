//! The cluster's one error type.

/// What can go wrong in the cluster crate.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Bad configuration or arguments: the message says what to change.
    #[error("{0}")]
    Config(String),
    /// The job manager answered with an error status.
    #[error("job manager answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// The job manager (or a peer) could not be reached.
    #[error("cannot reach {what}: {message}")]
    Unreachable {
        /// What was called.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] floe_runtime::RuntimeError),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl ClusterError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result of the cluster crate.
pub type Result<T> = std::result::Result<T, ClusterError>;
