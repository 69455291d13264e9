//! The messages of the cluster: the REST API of the job manager (what the CLI, the web page
//! and job binaries' `submit` send and receive), and the internal endpoints task managers
//! and workers use. Everything is JSON; every path is under `/api/v1`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /api/v1/health` (no token) | | [`Health`] |
//! | `POST /api/v1/artifacts` | the job binary (raw bytes, header `x-floe-name` optional) | [`ArtifactInfo`] |
//! | `GET /api/v1/artifacts/{sha256}` | | the binary |
//! | `POST /api/v1/jobs` | [`SubmitRequest`] | [`JobSummary`] |
//! | `GET /api/v1/jobs` | | `Vec<`[`JobSummary`]`>` |
//! | `GET /api/v1/jobs/{id}` | | [`JobDetail`] |
//! | `POST /api/v1/jobs/{id}/cancel` | | [`JobSummary`] |
//! | `POST /api/v1/jobs/{id}/savepoint` | [`SavepointRequest`] | [`SavepointInfo`] (when written) |
//! | `POST /api/v1/jobs/{id}/stop` | [`SavepointRequest`] | [`SavepointInfo`] (when written; the job is then `stopped`) |
//! | `POST /api/v1/jobs/{id}/resume` | [`ResumeRequest`] | [`JobSummary`] (a stopped job runs again from its savepoint) |
//! | `POST /api/v1/jobs/{id}/rescale` | [`RescaleRequest`] | [`JobSummary`] (stop with savepoint, resume at the new parallelism) |
//! | `GET /api/v1/taskmanagers` | | `Vec<`[`TaskManagerInfo`]`>` |
//! | `POST /api/v1/taskmanagers` | [`RegisterRequest`] | [`RegisterResponse`] |
//! | `POST /api/v1/taskmanagers/{tm}/heartbeat` | [`Heartbeat`] | [`HeartbeatResponse`] (long poll) |
//! | `POST /api/v1/attempts/{attempt}/workers/{worker}` | [`WorkerHello`] | `{}` |
//! | `GET /api/v1/attempts/{attempt}/peers?wait_ms=N` | | [`Peers`] (long poll) |
//! | `POST /api/v1/attempts/{attempt}/events` | `Vec<`[`WorkerEvent`]`>` | `{}` |
//! | `GET /api/v1/attempts/{attempt}/commands?wait_ms=N` | | `Vec<`[`WorkerCommand`]`>` (long poll) |
//! | `GET /metrics` | | Prometheus text |
//! | `GET /` | | the web page (static; it asks for the token and calls the API) |
//!
//! Every endpoint but `/api/v1/health` and the static page needs `Authorization: Bearer
//! <token>`; errors are [`ApiError`] with a 4xx or 5xx status. Workers do not get the token:
//! each attempt's workers get a credential of their own ([`WorkerSpec::token`]) that opens
//! only the `/api/v1/attempts/{attempt}/...` endpoints of their attempt.

use serde::{Deserialize, Serialize};

/// Header naming an uploaded artifact (a display name only: storage is by content).
pub const NAME_HEADER: &str = "x-floe-name";
/// Environment variable holding the job manager's URL in workers and clients.
pub const JOB_MANAGER_ENV: &str = "FLOE_JOB_MANAGER";
/// Environment variable holding the bearer token in workers and clients.
pub const TOKEN_ENV: &str = "FLOE_TOKEN";
/// Environment variable: a PEM file of extra CA certificates to trust for an `https://` job
/// manager (the `--ca-cert` of the CLI and task managers; task managers hand it to workers).
pub const CA_CERT_ENV: &str = "FLOE_CA_CERT";
/// Environment variable holding a worker's [`WorkerSpec`] (JSON).
pub const WORKER_SPEC_ENV: &str = "FLOE_WORKER_SPEC";
/// Environment variable: the local directory a task manager gives a worker for its state
/// (`<work dir>/state/<job id>`, mode 0700); it replaces the job's own `--state-dir`.
pub const WORKER_STATE_DIR_ENV: &str = "FLOE_WORKER_STATE_DIR";

/// A credential: serialized as the string it is, shown as `<redacted>` by `Debug`, so that
/// logging a message that holds one does not leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<none>" } else { "<redacted>" })
    }
}

/// Every error answer: what is wrong, said so that the caller knows what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The message.
    pub error: String,
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Version of the job manager.
    pub version: String,
}

/// An uploaded job binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Its sha256 (hex): its name in the store.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The display name given at upload (sanitized), if any.
    pub name: Option<String>,
}

/// How a job is restarted after a failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RestartStrategy {
    /// Never: the first failure fails the job.
    None,
    /// Up to `attempts` restarts, `delay_ms` apart.
    FixedDelay {
        /// Restarts allowed.
        attempts: u32,
        /// Wait before each restart.
        delay_ms: u64,
    },
    /// Up to `attempts` restarts; the wait starts at `initial_ms` and is multiplied by
    /// `multiplier` after each, up to `max_ms`.
    ExponentialBackoff {
        /// Restarts allowed.
        attempts: u32,
        /// First wait.
        initial_ms: u64,
        /// Longest wait.
        max_ms: u64,
        /// Growth of the wait.
        multiplier: f64,
    },
}

impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy::FixedDelay {
            attempts: 10,
            delay_ms: 1_000,
        }
    }
}

/// `POST /api/v1/jobs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// sha256 of an uploaded artifact.
    pub artifact: String,
    /// Arguments of the job binary (after its mode word).
    #[serde(default)]
    pub args: Vec<String>,
    /// Parallelism (the number of slots the job takes), at least 1.
    pub parallelism: usize,
    /// A name to show; defaults to the artifact's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Restart strategy; defaults to [`RestartStrategy::default`].
    #[serde(default)]
    pub restart: Option<RestartStrategy>,
    /// Checkpoint interval in ms given to the job (`None`: the job's own setting).
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// A savepoint directory (on the job manager's machine) to start from.
    #[serde(default)]
    pub savepoint: Option<String>,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for enough free slots.
    Scheduled,
    /// Workers are starting.
    Deploying,
    /// Every worker runs.
    Running,
    /// Failed; waiting to restart from the latest checkpoint.
    Restarting,
    /// A stop with savepoint is in progress.
    Stopping,
    /// Ended by itself (bounded input).
    Finished,
    /// Cancelled by a user.
    Cancelled,
    /// Stopped with a savepoint; it can be resumed.
    Stopped,
    /// Failed for good (attempts ran out, or the job cannot run).
    Failed,
}

impl JobState {
    /// Its name, as in JSON (`running`, `restarting`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Deploying => "deploying",
            JobState::Running => "running",
            JobState::Restarting => "restarting",
            JobState::Stopping => "stopping",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Stopped => "stopped",
            JobState::Failed => "failed",
        }
    }

    /// Whether the job will not run again by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Cancelled | JobState::Stopped | JobState::Failed
        )
    }
}

/// One line of a job's list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Its id (`j-` and 12 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Its parallelism.
    pub parallelism: usize,
    /// Restarts so far.
    pub restarts: u32,
    /// When it was submitted (ms since the epoch).
    pub submitted_at: i64,
    /// The newest completed checkpoint, if any.
    pub last_checkpoint: Option<u64>,
}

/// A change of state, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The new state.
    pub state: JobState,
    /// When (ms since the epoch).
    pub at: i64,
    /// Why, when it says more than the state.
    pub reason: Option<String>,
}

/// A completed (or failed) checkpoint as the job manager saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// Its id.
    pub id: u64,
    /// Bytes of state written.
    pub bytes: u64,
    /// From trigger to completion (ms).
    pub duration_ms: u64,
    /// When it completed (ms since the epoch).
    pub completed_at: i64,
    /// Whether it was a savepoint.
    pub is_savepoint: bool,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// An exception a job raised (a failed attempt).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    /// When (ms since the epoch).
    pub at: i64,
    /// The attempt that failed.
    pub attempt: u64,
    /// What happened (the worker's error, or the loss of its task manager).
    pub message: String,
}

/// Per-operator figures, summed over subtasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorMetrics {
    /// Operator (node) id.
    pub node: usize,
    /// Operator name.
    pub name: String,
    /// Records in, total.
    pub records_in: u64,
    /// Records out, total.
    pub records_out: u64,
    /// Records in per second (recent).
    pub records_in_per_sec: f64,
    /// Records out per second (recent).
    pub records_out_per_sec: f64,
    /// Share of time blocked on output (0 to 1), the most blocked subtask.
    pub backpressure: f64,
    /// The lowest watermark over subtasks (ms), if any.
    pub watermark: Option<i64>,
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The artifact it runs.
    pub artifact: String,
    /// Its arguments, with the values of secret ones (passwords, tokens, keys) shown as
    /// `<redacted>` ([`crate::redact::redact_args`]).
    pub args: Vec<String>,
    /// Its restart strategy.
    pub restart: RestartStrategy,
    /// Its states so far, oldest first.
    pub history: Vec<StatusChange>,
    /// Its graph ([`floe_runtime::describe::GraphDescription`] as JSON), once a worker
    /// reported it.
    pub graph: Option<serde_json::Value>,
    /// Per-operator figures of the running attempt.
    pub operators: Vec<OperatorMetrics>,
    /// Recent checkpoints, newest last.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Failures, newest last.
    pub exceptions: Vec<ExceptionInfo>,
    /// The savepoint it stopped with, if it did.
    pub savepoint: Option<String>,
    /// The current attempt, if one runs.
    pub attempt: Option<u64>,
}

/// `POST /api/v1/jobs/{id}/savepoint` and `/stop`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointRequest {
    /// Where to write it; defaults to a new directory in the job manager's store.
    #[serde(default)]
    pub dir: Option<String>,
}

/// A written savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointInfo {
    /// The job.
    pub job: String,
    /// Its directory.
    pub dir: String,
    /// The checkpoint id it was taken as.
    pub checkpoint: u64,
}

/// `POST /api/v1/jobs/{id}/resume`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The savepoint to resume from; defaults to the one the job stopped with.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// A new parallelism; defaults to the job's.
    #[serde(default)]
    pub parallelism: Option<usize>,
}

/// `POST /api/v1/jobs/{id}/rescale`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescaleRequest {
    /// The new parallelism, at least 1.
    pub parallelism: usize,
}

/// `POST /api/v1/taskmanagers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Slots offered (subtask indexes it runs at once), at least 1.
    pub slots: usize,
    /// The host its workers listen on for data (e.g. `127.0.0.1`).
    pub host: String,
    /// Its process id, for display.
    pub pid: u32,
}

/// Answer to a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The id given to the task manager (`tm-` and hex digits).
    pub id: String,
    /// How often to send heartbeats.
    pub heartbeat_interval_ms: u64,
    /// A task manager silent for this long is considered lost.
    pub heartbeat_timeout_ms: u64,
}

/// A task manager as the job manager sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskManagerInfo {
    /// Its id.
    pub id: String,
    /// Its slots.
    pub slots: usize,
    /// Slots in use.
    pub slots_used: usize,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Last heartbeat (ms since the epoch).
    pub last_heartbeat: i64,
}

/// What a worker process is doing, as its task manager sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum WorkerState {
    /// The process runs.
    Running,
    /// The process ended; `code` is its exit code (`None` if killed by a signal), `stderr`
    /// the end of what it printed there.
    Exited {
        /// Exit code.
        code: Option<i32>,
        /// Last lines of its stderr.
        stderr: String,
    },
}

/// One worker process of a task manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The attempt it belongs to.
    pub attempt: u64,
    /// Its index among the attempt's workers.
    pub worker: usize,
    /// What it is doing.
    pub state: WorkerState,
}

/// `POST /api/v1/taskmanagers/{tm}/heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Its workers (exited ones are reported until the job manager answers
    /// [`TmCommand::Forget`]).
    pub workers: Vec<WorkerStatus>,
    /// How long the job manager may hold the answer waiting for a command (ms).
    #[serde(default)]
    pub wait_ms: u64,
}

/// What a task manager is told to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum TmCommand {
    /// Start a worker process.
    Deploy {
        /// What it runs (boxed: the other commands are two numbers).
        spec: Box<WorkerSpec>,
    },
    /// Kill (SIGKILL) the worker of `attempt` and forget it.
    Kill {
        /// The attempt.
        attempt: u64,
        /// The worker.
        worker: usize,
    },
    /// Forget an exited worker (its exit was seen).
    Forget {
        /// The attempt.
        attempt: u64,
        /// The worker.
        worker: usize,
    },
}

/// Answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Commands, in order.
    pub commands: Vec<TmCommand>,
    /// Set when the job manager does not know this task manager (it restarted, or declared
    /// it lost): register again, after killing every worker.
    #[serde(default)]
    pub unknown: bool,
}

/// Everything a worker process needs to run its part of an attempt. Given to it as JSON in
/// [`WORKER_SPEC_ENV`] (the environment, readable by its user only); the job binary runs as
/// `<binary> worker`, and takes its arguments from here rather than from a command line
/// that every user of the machine can read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The job.
    pub job: String,
    /// The attempt (unique over the job manager's life, increasing).
    pub attempt: u64,
    /// This worker's index, `0..workers`; worker 0 coordinates checkpoints.
    pub worker: usize,
    /// Workers of the attempt.
    pub workers: usize,
    /// The artifact (sha256) to run.
    pub artifact: String,
    /// The job binary's arguments.
    pub args: Vec<String>,
    /// The job's parallelism.
    pub parallelism: usize,
    /// For each subtask index `0..parallelism`, the worker that runs it.
    pub placement: Vec<usize>,
    /// The job's checkpoint directory (shared by every worker).
    pub checkpoint_dir: String,
    /// Checkpoint interval (ms), if the job manager sets it.
    pub checkpoint_interval_ms: Option<u64>,
    /// A savepoint to restore from instead of the newest checkpoint.
    pub restore_from: Option<String>,
    /// The host to listen on for data from other workers.
    pub host: String,
    /// The secret every connection between the attempt's workers proves (its own for each
    /// attempt; never shown by `Debug`).
    pub secret: floe_runtime::AttemptSecret,
    /// The credential the worker calls the job manager with: it opens only this attempt's
    /// endpoints (filled in by the job manager when it hands the spec to a task manager).
    #[serde(default)]
    pub token: Secret,
}

/// `POST /api/v1/attempts/{attempt}/workers/{worker}`: a worker is listening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHello {
    /// `host:port` it accepts data and control connections on.
    pub addr: String,
}

/// `GET /api/v1/attempts/{attempt}/peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// The address of every worker by index, once all have said hello.
    pub addrs: Option<Vec<String>>,
    /// Set when the attempt is over (cancelled or failed): the worker should exit.
    #[serde(default)]
    pub cancelled: bool,
}

/// What workers tell the job manager.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WorkerEvent {
    /// The worker's tasks run. Worker 0 also sends the graph.
    Running {
        /// The worker.
        worker: usize,
        /// The job graph (worker 0 only).
        graph: Option<serde_json::Value>,
    },
    /// A checkpoint completed (worker 0).
    CheckpointCompleted {
        /// Its id.
        id: u64,
        /// State bytes.
        bytes: u64,
        /// Duration (ms).
        duration_ms: u64,
        /// Whether it was a savepoint.
        is_savepoint: bool,
    },
    /// A checkpoint failed (worker 0); counted in `floe_checkpoints_failed_total`.
    CheckpointFailed {
        /// Its id.
        id: u64,
        /// Why it failed.
        reason: String,
    },
    /// A savepoint asked for by [`WorkerCommand::Savepoint`] was written (worker 0).
    SavepointCompleted {
        /// The request it answers.
        request: u64,
        /// Where.
        dir: String,
        /// As which checkpoint.
        checkpoint: u64,
    },
    /// The worker's metrics now.
    Metrics {
        /// The worker.
        worker: usize,
        /// Its registry in Prometheus text.
        prometheus: String,
        /// Its operators' figures (its subtasks only).
        operators: Vec<OperatorMetrics>,
    },
    /// The worker's tasks all ended normally (the process exits 0 next).
    Finished {
        /// The worker.
        worker: usize,
    },
    /// The worker failed (the process exits non-zero next).
    Failed {
        /// The worker.
        worker: usize,
        /// Why.
        error: String,
    },
}

/// What the job manager tells worker 0 of an attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum WorkerCommand {
    /// Take a savepoint into `dir`; with `stop`, end the job after it.
    Savepoint {
        /// Request id, echoed in [`WorkerEvent::SavepointCompleted`].
        request: u64,
        /// Where.
        dir: String,
        /// Whether to stop after it.
        stop: bool,
    },
    /// Take a checkpoint now.
    Checkpoint,
}

#[cfg(test)]
mod tests {
    use super::JobState;

    #[test]
    fn state_names_are_the_json_names() {
        use JobState::*;
        for state in [
            Scheduled, Deploying, Running, Restarting, Stopping, Finished, Cancelled, Stopped, Failed,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
