use thiserror::Error;

/// Errors raised by keyed state and its backends.
#[derive(Debug, Error)]
pub enum StateError {
    /// Two states were registered under one name with different types.
    #[error("state `{name}` is already registered with another type")]
    TypeMismatch {
        /// Name of the state.
        name: String,
    },
    /// A key was used that belongs to a key group this subtask does not own.
    #[error("key group {key_group} is outside this subtask's range {range}")]
    ForeignKeyGroup {
        /// The key group of the key.
        key_group: u16,
        /// The range this backend owns.
        range: String,
    },
    /// State could not be encoded or decoded (a snapshot written by an incompatible version,
    /// or corrupted).
    #[error("state serialization: {0}")]
    Serialization(String),
    /// Checkpoint storage failed or holds something unreadable.
    #[error("checkpoint storage: {0}")]
    Storage(String),
    /// Checkpoints were completed in a directory, but none of those left can be restored
    /// (every one is corrupt or missing).
    #[error("checkpoints were taken in {location}, but none can be restored: {}", .problems.join("; "))]
    Unrestorable {
        /// The checkpoint directory.
        location: String,
        /// What is wrong, per checkpoint (`checkpoint 7: ...`).
        problems: Vec<String>,
    },
    /// A checkpoint or savepoint does not belong to the job restoring it.
    #[error("checkpoint {checkpoint} in {location} does not belong to this job: {}", .differences.join("; "))]
    ForeignCheckpoint {
        /// Where it is.
        location: String,
        /// Its id.
        checkpoint: u64,
        /// Every difference found.
        differences: Vec<String>,
    },
    /// A handle was used with a backend that did not create it.
    #[error("state handle #{0} does not belong to this backend")]
    UnknownHandle(usize),
}

/// Result alias for this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
