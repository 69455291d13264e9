//! Floe's cluster: a job manager that accepts job binaries and keeps their jobs running,
//! task managers that run them in worker processes, the HTTP client both use (and the CLI),
//! and the worker side of an attempt.
//!
//! The messages are in [`protocol`]; see `docs/ARCHITECTURE.md` for how the parts meet.

pub mod cli;
pub mod client;
pub mod error;
pub mod jobmanager;
pub mod protocol;
pub mod redact;
pub mod taskmanager;
pub mod worker;

pub use error::{ClusterError, Result};
