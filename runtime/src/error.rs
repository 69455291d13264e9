use thiserror::Error;

/// An error raised by user code (a function passed to the DSL).
pub type UserError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who is at fault for an error, and so whether a retry can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The job's code or input: a retry fails the same way.
    User,
    /// Something outside Floe (a file, a broker): a retry may help.
    External,
    /// Floe itself.
    Runtime,
}

/// Errors raised by the runtime.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A user function returned an error or panicked.
    #[error("user function failed: {0}")]
    User(UserError),
    /// An external system failed (I/O, connector).
    #[error("{context}: {source}")]
    External {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Keyed state failed.
    #[error("keyed state: {0}")]
    State(#[from] floe_checkpoints::StateError),
    /// The checkpoint or savepoint to restore cannot be used: the message says which, what
    /// is wrong, and what to do.
    #[error("{0}")]
    Restore(String),
    /// The job graph is not valid; the message says what to change.
    #[error("invalid job graph: {0}")]
    InvalidGraph(String),
    /// A record reached an operator that needs something the record lacks.
    #[error("{0}")]
    InvalidRecord(String),
    /// The task was cancelled because another task failed or the job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A task failed; names the operator and the subtask.
    #[error("operator `{operator}` (subtask {subtask}/{parallelism}) failed: {source}")]
    Task {
        /// Name of the operator that failed.
        operator: String,
        /// Index of the subtask that failed, from 1 as Flink prints it.
        subtask: usize,
        /// Parallelism of the operator.
        parallelism: usize,
        /// The cause.
        #[source]
        source: Box<RuntimeError>,
    },
    /// A task panicked.
    #[error("panicked: {0}")]
    Panic(String),
    /// The runtime broke an internal rule.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// Wraps an I/O or connector error with what was being done.
    pub fn external(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        RuntimeError::External {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            RuntimeError::User(_)
            | RuntimeError::InvalidGraph(_)
            | RuntimeError::InvalidRecord(_)
            | RuntimeError::Restore(_)
            | RuntimeError::Panic(_) => Fault::User,
            RuntimeError::External { .. } => Fault::External,
            RuntimeError::Task { source, .. } => source.fault(),
            RuntimeError::State(_) | RuntimeError::Cancelled | RuntimeError::Internal(_) => Fault::Runtime,
        }
    }

    /// Whether restarting the job may succeed where this attempt failed.
    pub fn is_retriable(&self) -> bool {
        self.fault() == Fault::External
    }

    /// Whether this error is only the echo of another task's failure.
    pub fn is_cancellation(&self) -> bool {
        match self {
            RuntimeError::Cancelled => true,
            RuntimeError::Task { source, .. } => source.is_cancellation(),
            _ => false,
        }
    }
}

impl From<UserError> for RuntimeError {
    fn from(e: UserError) -> Self {
        RuntimeError::User(e)
    }
}

/// Result alias for the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
