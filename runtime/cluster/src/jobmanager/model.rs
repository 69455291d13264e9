//! The job manager's records: what it keeps per job (on disk, in `jobs/<id>.json`), per
//! attempt and per task manager (in memory only), and the restart strategy's arithmetic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{
    CheckpointInfo, ExceptionInfo, JobDetail, JobState, JobSummary, OperatorMetrics, RestartStrategy, SavepointInfo,
    StatusChange, TmCommand, WorkerCommand,
};

/// Checkpoints kept in a job's record.
pub(crate) const MAX_CHECKPOINTS: usize = 50;
/// Exceptions kept in a job's record.
pub(crate) const MAX_EXCEPTIONS: usize = 100;
/// Status changes kept in a job's record.
pub(crate) const MAX_HISTORY: usize = 500;

/// Everything the job manager knows about a job that must survive its restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    /// `j-` and 12 hex digits.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The artifact (sha256) it runs.
    pub artifact: String,
    /// The job binary's arguments.
    pub args: Vec<String>,
    /// Slots it takes.
    pub parallelism: usize,
    /// How failures are retried.
    pub restart: RestartStrategy,
    /// Checkpoint interval handed to workers.
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Submission time (ms since the epoch).
    pub submitted_at: i64,
    /// Current state.
    pub state: JobState,
    /// States so far, oldest first.
    #[serde(default)]
    pub history: Vec<StatusChange>,
    /// The graph worker 0 reported.
    #[serde(default)]
    pub graph: Option<serde_json::Value>,
    /// Recent checkpoints, newest last.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointInfo>,
    /// Failures, newest last.
    #[serde(default)]
    pub exceptions: Vec<ExceptionInfo>,
    /// Newest completed checkpoint id.
    #[serde(default)]
    pub last_checkpoint: Option<u64>,
    /// The savepoint it stopped with.
    #[serde(default)]
    pub savepoint: Option<String>,
    /// The running attempt.
    #[serde(default)]
    pub attempt: Option<u64>,
    /// Restarts after failures, over the job's life.
    #[serde(default)]
    pub restarts: u32,
    /// Restarts counted against the strategy (reset by a resume).
    #[serde(default)]
    pub restarts_since_resume: u32,
    /// The savepoint it was submitted or resumed from, until a checkpoint completes: what a
    /// new attempt restores from (`None`: the newest checkpoint, if any).
    #[serde(default)]
    pub resumed_from: Option<String>,
    /// Checkpoints completed, over the job's life.
    #[serde(default)]
    pub checkpoints_completed: u64,
    /// Checkpoints failed, over the job's life.
    #[serde(default)]
    pub checkpoints_failed: u64,
    /// Number of the next savepoint directory (`sp-<n>`).
    #[serde(default)]
    pub next_savepoint: u64,
    /// When a restart is due (ms since the epoch), while `Restarting`.
    #[serde(default)]
    pub restart_at: Option<i64>,
}

/// Appends `item`, dropping the oldest beyond `max`.
fn push_capped<T>(v: &mut Vec<T>, item: T, max: usize) {
    v.push(item);
    if v.len() > max {
        let excess = v.len() - max;
        v.drain(..excess);
    }
}

impl JobRecord {
    /// Its line in the job list.
    pub fn summary(&self) -> JobSummary {
        JobSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            state: self.state,
            parallelism: self.parallelism,
            restarts: self.restarts,
            submitted_at: self.submitted_at,
            last_checkpoint: self.last_checkpoint,
        }
    }

    /// Its detail, with the running attempt's operator figures.
    pub fn detail(&self, operators: Vec<OperatorMetrics>) -> JobDetail {
        JobDetail {
            summary: self.summary(),
            artifact: self.artifact.clone(),
            // Shown to every client: secrets in the arguments are hidden.
            args: crate::redact::redact_args(&self.args),
            restart: self.restart.clone(),
            history: self.history.clone(),
            graph: self.graph.clone(),
            operators,
            checkpoints: self.checkpoints.clone(),
            exceptions: self.exceptions.clone(),
            savepoint: self.savepoint.clone(),
            attempt: self.attempt,
        }
    }

    /// Moves to `state`, recording why.
    pub fn set_state(&mut self, state: JobState, reason: Option<String>, now: i64) {
        self.state = state;
        push_capped(&mut self.history, StatusChange { state, at: now, reason }, MAX_HISTORY);
    }

    /// Records a failed attempt.
    pub fn push_exception(&mut self, attempt: u64, message: String, now: i64) {
        let exception = ExceptionInfo {
            at: now,
            attempt,
            message,
        };
        push_capped(&mut self.exceptions, exception, MAX_EXCEPTIONS);
    }

    /// Records a checkpoint (completed or failed).
    pub fn push_checkpoint(&mut self, info: CheckpointInfo) {
        push_capped(&mut self.checkpoints, info, MAX_CHECKPOINTS);
    }

    /// What a new attempt restores from: the savepoint the job was started or resumed from
    /// while no checkpoint has completed since, else the newest checkpoint (`None`).
    pub fn restore_from(&self) -> Option<String> {
        self.resumed_from.clone()
    }
}

/// The wait before restart number `restarts_done + 1`, or `None` when the strategy allows
/// no more restarts.
pub(crate) fn restart_delay(strategy: &RestartStrategy, restarts_done: u32) -> Option<u64> {
    match strategy {
        RestartStrategy::None => None,
        RestartStrategy::FixedDelay { attempts, delay_ms } => (restarts_done < *attempts).then_some(*delay_ms),
        RestartStrategy::ExponentialBackoff {
            attempts,
            initial_ms,
            max_ms,
            multiplier,
        } => {
            if restarts_done >= *attempts {
                return None;
            }
            let growth = if multiplier.is_finite() && *multiplier >= 1.0 {
                *multiplier
            } else {
                1.0
            };
            let exponent = i32::try_from(restarts_done).unwrap_or(i32::MAX);
            let delay = (*initial_ms as f64) * growth.powi(exponent);
            let capped = delay.min(*max_ms as f64).max(0.0);
            Some(capped as u64)
        }
    }
}

/// The persisted counters of the job manager (`state.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PersistedState {
    /// The next attempt id to give.
    pub next_attempt: u64,
    /// Display names of uploaded artifacts, by sha256.
    #[serde(default)]
    pub artifact_names: BTreeMap<String, String>,
}

/// A registered task manager.
#[derive(Clone, Debug)]
pub(crate) struct TaskManager {
    /// Its id.
    pub id: String,
    /// Registration order, for placement.
    pub seq: u64,
    /// Slots offered.
    pub slots: usize,
    /// Host its workers listen on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Last heartbeat received (ms since the epoch).
    pub last_heartbeat: i64,
    /// Commands not yet handed over.
    pub commands: Vec<TmCommand>,
}

/// One worker process of an attempt.
#[derive(Clone, Debug)]
pub(crate) struct AttemptWorker {
    /// The task manager running it.
    pub tm: String,
    /// That task manager's host.
    pub host: String,
    /// Subtask indexes it runs.
    pub subtasks: Vec<usize>,
    /// Its data address, once it said hello.
    pub addr: Option<String>,
    /// Whether it reported `Running`.
    pub running: bool,
    /// Whether it reported `Finished`.
    pub finished: bool,
    /// Its exit code, once its task manager reported its end.
    pub exited: Option<Option<i32>>,
    /// Whether its slots are free again (it exited, was killed or its TM was lost).
    pub released: bool,
    /// Its latest metrics.
    pub metrics: Option<WorkerMetrics>,
}

/// The latest metrics a worker sent.
#[derive(Clone, Debug)]
pub(crate) struct WorkerMetrics {
    /// Its registry in Prometheus text.
    pub prometheus: String,
    /// Its operators' figures.
    pub operators: Vec<OperatorMetrics>,
}

/// A stop with savepoint in progress.
#[derive(Clone, Debug)]
pub(crate) struct StopProgress {
    /// The savepoint request.
    pub request: u64,
    /// The savepoint, once written.
    pub done: Option<SavepointInfo>,
    /// After the savepoint, when workers still running are killed (ms since the epoch).
    pub grace_until: Option<i64>,
}

/// One run of a job on a set of workers.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// Its id.
    pub id: u64,
    /// Its job.
    pub job: String,
    /// Its workers, by index.
    pub workers: Vec<AttemptWorker>,
    /// Whether it ended (failed, cancelled, finished or stopped).
    pub over: bool,
    /// Commands for worker 0 not yet handed over.
    pub commands: Vec<WorkerCommand>,
    /// A stop with savepoint in progress.
    pub stop: Option<StopProgress>,
    /// When the attempt fails unless all its workers run (ms since the epoch).
    pub deploy_deadline: i64,
}

/// A savepoint request waiting for its answer.
#[derive(Clone, Debug)]
pub(crate) struct PendingSavepoint {
    /// The job.
    pub job: String,
    /// The attempt asked.
    pub attempt: u64,
    /// When it gives up (ms since the epoch).
    pub deadline: i64,
    /// The answer, once known.
    pub result: Option<Result<SavepointInfo, RequestFailure>>,
}

/// Why a savepoint request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestFailure {
    /// Whether it ran out of time.
    pub timed_out: bool,
    /// What happened.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_allows_its_attempts() {
        let s = RestartStrategy::FixedDelay {
            attempts: 2,
            delay_ms: 7,
        };
        assert_eq!(restart_delay(&s, 0), Some(7));
        assert_eq!(restart_delay(&s, 1), Some(7));
        assert_eq!(restart_delay(&s, 2), None);
        assert_eq!(restart_delay(&RestartStrategy::None, 0), None);
    }

    #[test]
    fn exponential_backoff_grows_and_caps() {
        let s = RestartStrategy::ExponentialBackoff {
            attempts: 5,
            initial_ms: 100,
            max_ms: 350,
            multiplier: 2.0,
        };
        let delays: Vec<_> = (0..6).map(|n| restart_delay(&s, n)).collect();
        assert_eq!(
            delays,
            vec![Some(100), Some(200), Some(350), Some(350), Some(350), None]
        );
    }
}
