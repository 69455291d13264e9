use thiserror::Error;

/// Errors of building or configuring a job, before it runs, and of running it.
///
/// ```
/// use floe_dsl::{DslError, EnvOptions};
/// let err = EnvOptions { parallelism: Some(0), ..Default::default() }.resolve().unwrap_err();
/// assert!(matches!(err, DslError::Config(_)));
/// ```
#[derive(Debug, Error)]
pub enum DslError {
    /// A command-line argument or configuration value is wrong; the message says what to
    /// change.
    #[error("{0}")]
    Config(String),
    /// The job is built wrongly (e.g. a window size of zero); the message says what to change.
    #[error("invalid job: {0}")]
    Build(String),
    /// The job failed while running.
    #[error(transparent)]
    Runtime(#[from] floe_runtime::RuntimeError),
    /// Running as a worker of a cluster failed (the job manager or a peer).
    #[error(transparent)]
    Cluster(#[from] floe_cluster::ClusterError),
}

/// Result alias of the DSL.
pub type Result<T, E = DslError> = std::result::Result<T, E>;
