//! Named failpoints: places in Floe's checkpoint and output paths where a crash test can
//! kill the process with SIGKILL exactly, instead of at a random moment of wall-clock time.
//!
//! A failpoint is one line, `floe_failpoints::failpoint!("checkpoint.after-manifest");`
//! (or with a qualifier, `failpoint!("kafka.before-commit", topic)`). Without the
//! `failpoints` cargo feature it expands to nothing: release builds and the demo carry no
//! trace of them. With it (`cargo test --workspace --all-features`, which `scripts/test.sh`
//! and CI run), the process reads `FLOE_FAILPOINTS` once, at the first failpoint it passes:
//!
//! ```text
//! FLOE_FAILPOINTS="name=action[;name=action...]"
//!     name     a failpoint below, or name[qualifier] for one that takes a qualifier
//!              (kafka.before-commit[payments-dlq]: commits to that topic only)
//!     action   kill      SIGKILL this process at the first hit
//!              kill@N    SIGKILL at the N-th hit (so that N - 1 passes complete first)
//!              pause     block the thread that hits it, for good (until killed from outside)
//!              pause@N   the same at the N-th hit
//!              off       count hits, do nothing
//! ```
//!
//! Each rule counts its own hits in the process (all threads together). Before acting, the
//! process writes `floe failpoint <name>: <action> at hit <n>` to stderr, so a test can tell
//! which failpoint a SIGKILLed process died at. A spec that does not parse (an unknown name,
//! a bad action) ends the process with exit code 2 and says what is wrong.
//!
//! # The failpoints
//!
//! [`FAILPOINTS`] lists them, in this order; the crash tests iterate over it.
//!
//! | name | where | in |
//! |---|---|---|
//! | `checkpoint.trigger` | the coordinator starts a checkpoint, before its barriers go to the sources | `runtime/src/coordinator.rs` |
//! | `checkpoint.barrier-received` | a source is told to take a barrier; an operator task reads a barrier on one of its inputs (before alignment) | `runtime/src/task.rs` |
//! | `checkpoint.before-snapshot` | a task, its barrier aligned, before the synchronous snapshot of its chain | `runtime/src/task.rs` |
//! | `checkpoint.after-snapshot` | a task, after the synchronous snapshot, before it acknowledges | `runtime/src/task.rs` |
//! | `checkpoint.ack-received` | the coordinator, an acknowledgement received, before it writes that state | `runtime/src/coordinator.rs` |
//! | `checkpoint.upload-shared` | the asynchronous upload: after each new RocksDB SST file is uploaded to `shared/` | `checkpoints/src/storage.rs` |
//! | `checkpoint.state-written` | the asynchronous upload: after a subtask's state file is written | `checkpoints/src/storage.rs` |
//! | `checkpoint.before-manifest` | every state file written, before the manifest (the commit point) | `checkpoints/src/storage.rs` |
//! | `checkpoint.after-manifest` | the manifest written, before the completion record and pruning | `checkpoints/src/storage.rs` |
//! | `checkpoint.before-notify` | the checkpoint complete, before any task is told | `runtime/src/coordinator.rs` |
//! | `checkpoint.after-notify` | every task told (none need have acted on it yet) | `runtime/src/coordinator.rs` |
//! | `task.before-notify` | a task, before its chain's `notify_checkpoint_complete` (sinks commit there) | `runtime/src/task.rs` |
//! | `task.after-notify` | a task, after its chain's `notify_checkpoint_complete` | `runtime/src/task.rs` |
//! | `kafka.before-commit[topic]` | the Kafka sink, an epoch's records and marker in the transaction, before `commit_transaction` (a dead-letter topic's: before the DLQ write becomes visible) | `operators/src/kafka/sink/transactional.rs` |
//! | `kafka.after-commit[topic]` | the Kafka sink, after `commit_transaction` succeeded, before the epoch leaves the sink's pending list | `operators/src/kafka/sink/transactional.rs` |
//! | `file.before-commit` | the exactly-once file sink, before the rename that commits a part file | `operators/src/sink/exactly_once.rs` |
//! | `file.after-commit` | the exactly-once file sink, after the rename | `operators/src/sink/exactly_once.rs` |
//! | `restore.load` | restore: the manifest of the checkpoint read, before its files are read and verified | `checkpoints/src/storage.rs` |
//! | `restore.kafka-recover[topic]` | restore: the Kafka sink fenced the old producer and read its commit marker, before committing restored epochs | `operators/src/kafka/sink/mod.rs` |

mod spec;

#[cfg(feature = "failpoints")]
mod active;

pub use spec::{parse, Action, Rule, SpecError};

#[cfg(feature = "failpoints")]
pub use active::hit;

/// A failpoint: its name and whether it takes a qualifier (and what it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failpoint {
    /// The dotted name, as in `failpoint!("...")`.
    pub name: &'static str,
    /// What `name[qualifier]` selects, for failpoints that take one.
    pub qualifier: Option<&'static str>,
}

const fn point(name: &'static str) -> Failpoint {
    Failpoint { name, qualifier: None }
}

const fn per_topic(name: &'static str) -> Failpoint {
    Failpoint {
        name,
        qualifier: Some("topic"),
    }
}

/// Every failpoint in Floe, in the order of the table in the [crate docs](crate).
pub const FAILPOINTS: &[Failpoint] = &[
    point("checkpoint.trigger"),
    point("checkpoint.barrier-received"),
    point("checkpoint.before-snapshot"),
    point("checkpoint.after-snapshot"),
    point("checkpoint.ack-received"),
    point("checkpoint.upload-shared"),
    point("checkpoint.state-written"),
    point("checkpoint.before-manifest"),
    point("checkpoint.after-manifest"),
    point("checkpoint.before-notify"),
    point("checkpoint.after-notify"),
    point("task.before-notify"),
    point("task.after-notify"),
    per_topic("kafka.before-commit"),
    per_topic("kafka.after-commit"),
    point("file.before-commit"),
    point("file.after-commit"),
    point("restore.load"),
    per_topic("restore.kafka-recover"),
];

/// The failpoint named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Failpoint> {
    FAILPOINTS.iter().find(|f| f.name == name)
}

/// Whether failpoints are compiled into this build (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// The environment variable that sets the failpoints' actions.
pub const ENV: &str = "FLOE_FAILPOINTS";

/// Marks a failpoint: `failpoint!("name")`, or `failpoint!("name", qualifier)` with a
/// `&str` qualifier (for failpoints that take one, see [`FAILPOINTS`]). Expands to nothing
/// without the `failpoints` feature; with it, acts as `FLOE_FAILPOINTS` says (see the
/// [crate docs](crate)).
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        $crate::hit($name, None)
    };
    ($name:literal, $qualifier:expr) => {
        $crate::hit($name, Some($qualifier))
    };
}

/// Marks a failpoint: `failpoint!("name")`, or `failpoint!("name", qualifier)` with a
/// `&str` qualifier (for failpoints that take one, see [`FAILPOINTS`]). Expands to nothing
/// without the `failpoints` feature; with it, acts as `FLOE_FAILPOINTS` says (see the
/// [crate docs](crate)).
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {};
    ($name:literal, $qualifier:expr) => {};
}

#[cfg(test)]
mod tests;
