//! The job manager's state machine: jobs, attempts, task managers and their slots. Pure: no
//! I/O and no clock of its own (every operation is given `now`, ms since the epoch); the HTTP
//! layer drives it, persists the records it marks dirty and wakes long polls after changes.
//! Task manager and worker traffic (heartbeats, hellos, events, failures) is in
//! [`super::workers`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use floe_runtime::AttemptSecret;

use crate::protocol::{
    JobDetail, JobState, JobSummary, OperatorMetrics, RegisterRequest, RegisterResponse, SavepointInfo, SubmitRequest,
    TaskManagerInfo, TmCommand, WorkerCommand, WorkerSpec,
};

use super::model::{
    Attempt, AttemptWorker, JobRecord, PendingSavepoint, PersistedState, RequestFailure, StopProgress, TaskManager,
};
use super::placement::{place, FreeSlots};

/// Largest parallelism a job may ask for.
pub(crate) const MAX_PARALLELISM: usize = 1024;
/// Largest slot count a task manager may offer.
pub(crate) const MAX_SLOTS: usize = 1024;

/// Why an operation was refused; the HTTP layer maps it to a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request is malformed (400).
    BadRequest(String),
    /// Something named does not exist (404).
    NotFound(String),
    /// Not possible in the current state (409).
    Conflict(String),
}

/// Settings of the state machine.
#[derive(Clone, Debug)]
pub(crate) struct ClusterConfig {
    /// The data directory (absolute): checkpoints and savepoints go below it.
    pub data_dir: PathBuf,
    /// Heartbeat interval told to task managers.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a task manager is lost.
    pub heartbeat_timeout_ms: u64,
    /// How long a savepoint may take.
    pub savepoint_timeout_ms: u64,
    /// After a stop's savepoint, how long workers get to exit before they are killed.
    pub stop_grace_ms: u64,
    /// How long an attempt's workers get from deployment to running (fetching the job
    /// binary, starting, connecting to each other) before the attempt fails.
    pub deploy_timeout_ms: u64,
    /// The job manager's random key (made at start, kept in memory only) from which each
    /// attempt's secret is derived: the state machine stays free of I/O, and every attempt
    /// still gets a secret no one can guess.
    pub attempt_key: AttemptSecret,
}

/// The whole state of the job manager.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(super) config: ClusterConfig,
    pub(super) jobs: BTreeMap<String, JobRecord>,
    pub(super) tms: BTreeMap<String, TaskManager>,
    pub(super) attempts: BTreeMap<u64, Attempt>,
    pub(super) requests: HashMap<u64, PendingSavepoint>,
    pub(super) state: PersistedState,
    next_request: u64,
    next_tm_seq: u64,
    dirty_jobs: BTreeSet<String>,
    state_dirty: bool,
    /// Set when the job manager shuts down: long polls answer at once.
    pub shutting_down: bool,
}

impl Cluster {
    /// A state machine over what was on disk. Jobs that were not done are put back to
    /// `Scheduled`: they run again (from their newest checkpoint) once slots register.
    pub fn restore(config: ClusterConfig, state: PersistedState, jobs: Vec<JobRecord>, now: i64) -> Self {
        let mut cluster = Cluster {
            config,
            jobs: BTreeMap::new(),
            tms: BTreeMap::new(),
            attempts: BTreeMap::new(),
            requests: HashMap::new(),
            state,
            next_request: 1,
            next_tm_seq: 0,
            dirty_jobs: BTreeSet::new(),
            state_dirty: false,
            shutting_down: false,
        };
        for mut job in jobs {
            if !job.state.is_terminal() {
                job.attempt = None;
                job.restart_at = None;
                job.set_state(
                    JobState::Scheduled,
                    Some(
                        "job manager restarted: the job runs again from its newest checkpoint once slots are free"
                            .into(),
                    ),
                    now,
                );
                cluster.dirty_jobs.insert(job.id.clone());
            }
            cluster.jobs.insert(job.id.clone(), job);
        }
        cluster
    }

    /// Takes the job records changed since the last call.
    pub fn take_dirty_jobs(&mut self) -> Vec<JobRecord> {
        let ids = std::mem::take(&mut self.dirty_jobs);
        ids.iter().filter_map(|id| self.jobs.get(id).cloned()).collect()
    }

    /// Takes the persisted counters if they changed since the last call.
    pub fn take_dirty_state(&mut self) -> Option<PersistedState> {
        std::mem::take(&mut self.state_dirty).then(|| self.state.clone())
    }

    pub(super) fn mark(&mut self, job: &str) {
        self.dirty_jobs.insert(job.to_string());
    }

    /// Remembers an uploaded artifact's display name.
    pub fn name_artifact(&mut self, sha256: &str, name: &str) {
        if self.state.artifact_names.get(sha256).map(String::as_str) != Some(name) {
            self.state.artifact_names.insert(sha256.to_string(), name.to_string());
            self.state_dirty = true;
        }
    }

    /// The display name of an artifact, if one was given.
    pub fn artifact_name(&self, sha256: &str) -> Option<String> {
        self.state.artifact_names.get(sha256).cloned()
    }

    /// Checks a parallelism asked for.
    pub fn check_parallelism(parallelism: usize) -> Result<(), Refusal> {
        if (1..=MAX_PARALLELISM).contains(&parallelism) {
            Ok(())
        } else {
            Err(Refusal::BadRequest(format!(
                "parallelism {parallelism} is out of range: it must be between 1 and {MAX_PARALLELISM}"
            )))
        }
    }

    /// Accepts a job (the artifact was checked by the caller) and schedules it.
    pub fn submit(&mut self, id: String, req: SubmitRequest, now: i64) -> Result<JobSummary, Refusal> {
        Self::check_parallelism(req.parallelism)?;
        if self.jobs.contains_key(&id) {
            return Err(Refusal::Conflict(format!("job {id} exists already")));
        }
        let name = req
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| self.artifact_name(&req.artifact))
            .unwrap_or_else(|| format!("job-{}", &req.artifact[..req.artifact.len().min(12)]));
        let mut job = JobRecord {
            id: id.clone(),
            name,
            artifact: req.artifact,
            args: req.args,
            parallelism: req.parallelism,
            restart: req.restart.unwrap_or_default(),
            checkpoint_interval_ms: req.checkpoint_interval_ms,
            submitted_at: now,
            state: JobState::Scheduled,
            history: Vec::new(),
            graph: None,
            checkpoints: Vec::new(),
            exceptions: Vec::new(),
            last_checkpoint: None,
            savepoint: None,
            attempt: None,
            restarts: 0,
            restarts_since_resume: 0,
            resumed_from: req.savepoint,
            checkpoints_completed: 0,
            checkpoints_failed: 0,
            next_savepoint: 1,
            restart_at: None,
        };
        job.set_state(JobState::Scheduled, None, now);
        self.jobs.insert(id.clone(), job);
        self.mark(&id);
        self.schedule(now);
        Ok(self.jobs[&id].summary())
    }

    /// Every job, oldest first.
    pub fn list_jobs(&self) -> Vec<JobSummary> {
        let mut list: Vec<_> = self.jobs.values().map(JobRecord::summary).collect();
        list.sort_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
        list
    }

    /// A job's record.
    pub fn job(&self, id: &str) -> Result<&JobRecord, Refusal> {
        self.jobs
            .get(id)
            .ok_or_else(|| Refusal::NotFound(format!("unknown job {id}")))
    }

    /// A job's detail.
    pub fn job_detail(&self, id: &str) -> Result<JobDetail, Refusal> {
        let job = self.job(id)?;
        let operators = job
            .attempt
            .and_then(|a| self.attempts.get(&a))
            .map(|attempt| {
                let lists: Vec<&[OperatorMetrics]> = attempt
                    .workers
                    .iter()
                    .filter_map(|w| w.metrics.as_ref().map(|m| m.operators.as_slice()))
                    .collect();
                super::metrics::merge_operators(&lists)
            })
            .unwrap_or_default();
        Ok(job.detail(operators))
    }

    /// The task managers.
    pub fn task_managers(&self) -> Vec<TaskManagerInfo> {
        let mut list: Vec<_> = self.tms.values().collect();
        list.sort_by_key(|tm| tm.seq);
        list.into_iter()
            .map(|tm| TaskManagerInfo {
                id: tm.id.clone(),
                slots: tm.slots,
                slots_used: self.slots_used(&tm.id),
                host: tm.host.clone(),
                pid: tm.pid,
                last_heartbeat: tm.last_heartbeat,
            })
            .collect()
    }

    /// Slots of a task manager held by workers.
    pub fn slots_used(&self, tm: &str) -> usize {
        self.attempts
            .values()
            .flat_map(|a| a.workers.iter())
            .filter(|w| !w.released && w.tm == tm)
            .map(|w| w.subtasks.len())
            .sum()
    }

    /// Registers a task manager under `id`.
    pub fn register(&mut self, id: String, req: RegisterRequest, now: i64) -> Result<RegisterResponse, Refusal> {
        if !(1..=MAX_SLOTS).contains(&req.slots) {
            return Err(Refusal::BadRequest(format!(
                "slots {} is out of range: a task manager offers between 1 and {MAX_SLOTS}",
                req.slots
            )));
        }
        if req.host.trim().is_empty() {
            return Err(Refusal::BadRequest(
                "host is empty: give the address workers listen on, e.g. 127.0.0.1".into(),
            ));
        }
        self.next_tm_seq += 1;
        self.tms.insert(
            id.clone(),
            TaskManager {
                id: id.clone(),
                seq: self.next_tm_seq,
                slots: req.slots,
                host: req.host,
                pid: req.pid,
                last_heartbeat: now,
                commands: Vec::new(),
            },
        );
        self.schedule(now);
        Ok(RegisterResponse {
            id,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            heartbeat_timeout_ms: self.config.heartbeat_timeout_ms,
        })
    }

    /// Cancels a job: its workers are killed.
    pub fn cancel(&mut self, id: &str, now: i64) -> Result<JobSummary, Refusal> {
        let job = self.job(id)?;
        if job.state.is_terminal() {
            return Err(Refusal::Conflict(format!(
                "job {id} is {} already: only a job that is not done can be cancelled",
                job.state.as_str()
            )));
        }
        if let Some(attempt) = job.attempt {
            self.end_attempt(attempt, "the job was cancelled");
        }
        let job = self.jobs.get_mut(id).ok_or_else(|| unknown(id))?;
        job.attempt = None;
        job.restart_at = None;
        job.set_state(JobState::Cancelled, Some("cancelled by a user".into()), now);
        self.mark(id);
        self.schedule(now);
        Ok(self.jobs[id].summary())
    }

    /// Asks worker 0 for a savepoint (with `stop`, the job ends after it). Answers the
    /// request id to wait on with [`Cluster::savepoint_result`].
    pub fn savepoint(&mut self, id: &str, dir: Option<String>, stop: bool, now: i64) -> Result<u64, Refusal> {
        let job = self.job(id)?;
        let attempt_id = match (job.state, job.attempt) {
            (JobState::Running, Some(a)) => a,
            (state, _) => {
                return Err(Refusal::Conflict(format!(
                    "job {id} is {}: a savepoint can only be taken while it is running",
                    state.as_str()
                )))
            }
        };
        if let Some(dir) = &dir {
            if !std::path::Path::new(dir).is_absolute() {
                return Err(Refusal::BadRequest(format!(
                    "savepoint dir {dir:?} is relative: give an absolute path on the job manager's machine"
                )));
            }
        }
        let job = self.jobs.get_mut(id).ok_or_else(|| unknown(id))?;
        let dir = dir.unwrap_or_else(|| {
            let n = job.next_savepoint.max(1);
            job.next_savepoint = n + 1;
            self.config
                .data_dir
                .join("savepoints")
                .join(id)
                .join(format!("sp-{n}"))
                .to_string_lossy()
                .into_owned()
        });
        if stop {
            job.set_state(JobState::Stopping, Some(format!("stop with savepoint into {dir}")), now);
        }
        self.mark(id);
        let request = self.next_request;
        self.next_request += 1;
        if let Some(attempt) = self.attempts.get_mut(&attempt_id) {
            attempt.commands.push(WorkerCommand::Savepoint { request, dir, stop });
            if stop {
                attempt.stop = Some(StopProgress {
                    request,
                    done: None,
                    grace_until: None,
                });
            }
        }
        self.requests.insert(
            request,
            PendingSavepoint {
                job: id.to_string(),
                attempt: attempt_id,
                deadline: now.saturating_add(ms(self.config.savepoint_timeout_ms)),
                result: None,
            },
        );
        Ok(request)
    }

    /// The answer to a savepoint request, once there is one (it is then forgotten).
    pub fn savepoint_result(&mut self, request: u64) -> Option<Result<SavepointInfo, RequestFailure>> {
        let result = self.requests.get(&request)?.result.clone()?;
        self.requests.remove(&request);
        Some(result)
    }

    /// Resumes a stopped job (or a failed or cancelled one from a given savepoint).
    pub fn resume(
        &mut self,
        id: &str,
        savepoint: Option<String>,
        parallelism: Option<usize>,
        now: i64,
    ) -> Result<JobSummary, Refusal> {
        if let Some(p) = parallelism {
            Self::check_parallelism(p)?;
        }
        let job = self.job(id)?;
        let from = match (job.state, savepoint) {
            (JobState::Stopped, given) => given.or_else(|| job.savepoint.clone()),
            (JobState::Failed | JobState::Cancelled, Some(given)) => Some(given),
            (state @ (JobState::Failed | JobState::Cancelled), None) => {
                return Err(Refusal::Conflict(format!(
                    "job {id} is {}: give the savepoint to resume it from",
                    state.as_str()
                )))
            }
            (state, _) => {
                return Err(Refusal::Conflict(format!(
                    "job {id} is {}: only a stopped, failed or cancelled job can be resumed",
                    state.as_str()
                )))
            }
        };
        let Some(from) = from else {
            return Err(Refusal::Conflict(format!(
                "job {id} has no savepoint to resume from: give one"
            )));
        };
        let job = self.jobs.get_mut(id).ok_or_else(|| unknown(id))?;
        if let Some(p) = parallelism {
            job.parallelism = p;
        }
        job.resumed_from = Some(from.clone());
        job.restarts_since_resume = 0;
        job.restart_at = None;
        job.set_state(
            JobState::Scheduled,
            Some(format!(
                "resumed from savepoint {from} at parallelism {}",
                job.parallelism
            )),
            now,
        );
        self.mark(id);
        self.schedule(now);
        Ok(self.jobs[id].summary())
    }

    /// Time-driven work: lost task managers, due restarts, savepoint deadlines, stops whose
    /// workers linger. Answers whether anything changed.
    pub fn tick(&mut self, now: i64) -> bool {
        let mut changed = self.expire_task_managers(now);
        let due: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Restarting && j.restart_at.is_some_and(|t| t <= now))
            .map(|j| j.id.clone())
            .collect();
        for id in due {
            if let Some(job) = self.jobs.get_mut(&id) {
                job.restart_at = None;
                job.set_state(JobState::Scheduled, None, now);
                self.mark(&id);
                changed = true;
            }
        }
        changed |= self.expire_requests(now);
        changed |= self.expire_stops(now);
        changed |= self.expire_deployments(now);
        changed |= self.schedule(now);
        changed
    }

    fn expire_requests(&mut self, now: i64) -> bool {
        let expired: Vec<(u64, PendingSavepoint)> = self
            .requests
            .iter()
            .filter(|(_, r)| r.result.is_none() && r.deadline <= now)
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        for (request, pending) in &expired {
            let message = format!(
                "the savepoint was not written within {} ms",
                self.config.savepoint_timeout_ms
            );
            if let Some(r) = self.requests.get_mut(request) {
                r.result = Some(Err(RequestFailure {
                    timed_out: true,
                    message: message.clone(),
                }));
            }
            let stop_pending = self
                .attempts
                .get(&pending.attempt)
                .and_then(|a| a.stop.as_ref())
                .is_some_and(|s| s.request == *request && s.done.is_none());
            if stop_pending {
                if let Some(attempt) = self.attempts.get_mut(&pending.attempt) {
                    attempt.stop = None;
                }
                if let Some(job) = self.jobs.get_mut(&pending.job) {
                    if job.state == JobState::Stopping {
                        job.set_state(JobState::Running, Some(format!("stop abandoned: {message}")), now);
                        self.mark(&pending.job);
                    }
                }
            }
        }
        !expired.is_empty()
    }

    /// Fails attempts whose workers did not all start in time: a deployment lost on its way
    /// to a task manager, a binary that hangs before running, workers that cannot reach
    /// each other. The job restarts by its strategy instead of deploying for ever.
    fn expire_deployments(&mut self, now: i64) -> bool {
        let late: Vec<(u64, String)> = self
            .attempts
            .values()
            .filter(|a| !a.over && a.deploy_deadline <= now && a.workers.iter().any(|w| !w.running))
            .map(|a| {
                let waiting: Vec<String> = a
                    .workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.running)
                    .map(|(i, w)| format!("worker {i} on {}", w.tm))
                    .collect();
                (a.id, waiting.join(", "))
            })
            .collect();
        for (attempt, waiting) in &late {
            let message = format!(
                "not running {} ms after deployment: {waiting} (raise --deploy-timeout-ms if the job binary is slow to fetch or start)",
                self.config.deploy_timeout_ms
            );
            self.fail_attempt(*attempt, message, now);
        }
        !late.is_empty()
    }

    fn expire_stops(&mut self, now: i64) -> bool {
        let lingering: Vec<u64> = self
            .attempts
            .values()
            .filter(|a| !a.over && a.stop.as_ref().and_then(|s| s.grace_until).is_some_and(|t| t <= now))
            .map(|a| a.id)
            .collect();
        for attempt in &lingering {
            self.finish_stop(*attempt, now);
        }
        !lingering.is_empty()
    }

    /// Starts attempts for waiting jobs that fit in the free slots. Answers whether any did.
    pub(super) fn schedule(&mut self, now: i64) -> bool {
        let mut waiting: Vec<(i64, String)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Scheduled && j.attempt.is_none())
            .map(|j| (j.submitted_at, j.id.clone()))
            .collect();
        waiting.sort();
        let mut started = false;
        for (_, id) in waiting {
            started |= self.try_start_attempt(&id, now);
        }
        started
    }

    fn try_start_attempt(&mut self, id: &str, now: i64) -> bool {
        let Some(job) = self.jobs.get(id) else {
            return false;
        };
        let mut tms: Vec<&TaskManager> = self.tms.values().collect();
        tms.sort_by_key(|tm| tm.seq);
        let free: Vec<FreeSlots> = tms
            .iter()
            .map(|tm| FreeSlots {
                tm: tm.id.clone(),
                free: tm.slots.saturating_sub(self.slots_used(&tm.id)),
            })
            .collect();
        let Some(placement) = place(job.parallelism, &free) else {
            return false;
        };
        let attempt_id = self.state.next_attempt.max(1);
        self.state.next_attempt = attempt_id + 1;
        self.state_dirty = true;
        let checkpoint_dir = self
            .config
            .data_dir
            .join("checkpoints")
            .join(id)
            .to_string_lossy()
            .into_owned();
        let restore_from = job.restore_from();
        let secret = self.config.attempt_key.derive(attempt_id);
        let mut workers = Vec::new();
        for (w, tm_id) in placement.workers.iter().enumerate() {
            let host = self.tms.get(tm_id).map(|t| t.host.clone()).unwrap_or_default();
            let spec = WorkerSpec {
                job: id.to_string(),
                attempt: attempt_id,
                worker: w,
                workers: placement.workers.len(),
                artifact: job.artifact.clone(),
                args: job.args.clone(),
                parallelism: job.parallelism,
                placement: placement.subtask_worker.clone(),
                checkpoint_dir: checkpoint_dir.clone(),
                checkpoint_interval_ms: job.checkpoint_interval_ms,
                restore_from: restore_from.clone(),
                host: host.clone(),
                secret: secret.clone(),
                // The REST credential is derived by the HTTP layer from the job manager's token.
                token: Default::default(),
            };
            if let Some(tm) = self.tms.get_mut(tm_id) {
                tm.commands.push(TmCommand::Deploy { spec: Box::new(spec) });
            }
            workers.push(AttemptWorker {
                tm: tm_id.clone(),
                host,
                subtasks: placement.subtasks_of(w),
                addr: None,
                running: false,
                finished: false,
                exited: None,
                released: false,
                metrics: None,
            });
        }
        let tm_list = placement.workers.join(", ");
        self.attempts.insert(
            attempt_id,
            Attempt {
                id: attempt_id,
                job: id.to_string(),
                workers,
                over: false,
                commands: Vec::new(),
                stop: None,
                deploy_deadline: now.saturating_add(ms(self.config.deploy_timeout_ms)),
            },
        );
        if let Some(job) = self.jobs.get_mut(id) {
            job.attempt = Some(attempt_id);
            let from = match &restore_from {
                Some(sp) => format!("savepoint {sp}"),
                None => "its newest checkpoint, if any".to_string(),
            };
            job.set_state(
                JobState::Deploying,
                Some(format!("attempt {attempt_id} on {tm_list}, restoring from {from}")),
                now,
            );
        }
        self.mark(id);
        true
    }

    /// Ends an attempt: its live workers are killed and its waiters answered `message`.
    pub(super) fn end_attempt(&mut self, attempt_id: u64, message: &str) {
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        attempt.over = true;
        attempt.commands.clear();
        for (w, worker) in attempt.workers.iter_mut().enumerate() {
            if worker.released {
                continue;
            }
            worker.released = true;
            if worker.exited.is_none() {
                if let Some(tm) = self.tms.get_mut(&worker.tm) {
                    tm.commands.push(TmCommand::Kill {
                        attempt: attempt_id,
                        worker: w,
                    });
                }
            }
        }
        for pending in self.requests.values_mut() {
            if pending.attempt == attempt_id && pending.result.is_none() {
                pending.result = Some(Err(RequestFailure {
                    timed_out: false,
                    message: message.to_string(),
                }));
            }
        }
        self.prune(attempt_id);
    }

    /// Forgets an attempt once it is over and none of its workers holds slots.
    pub(super) fn prune(&mut self, attempt_id: u64) {
        let done = self
            .attempts
            .get(&attempt_id)
            .is_some_and(|a| a.over && a.workers.iter().all(|w| w.released));
        if done {
            self.attempts.remove(&attempt_id);
        }
    }

    /// Completes a stop: the job is `Stopped` with its savepoint.
    pub(super) fn finish_stop(&mut self, attempt_id: u64, now: i64) {
        let Some(info) = self
            .attempts
            .get(&attempt_id)
            .and_then(|a| a.stop.as_ref())
            .and_then(|s| s.done.clone().map(|info| (s.request, info)))
        else {
            return;
        };
        let (request, info) = info;
        if let Some(pending) = self.requests.get_mut(&request) {
            pending.result = Some(Ok(info.clone()));
        }
        let job_id = self.attempts[&attempt_id].job.clone();
        self.end_attempt(attempt_id, "the job stopped");
        if let Some(job) = self.jobs.get_mut(&job_id) {
            if job.attempt == Some(attempt_id) {
                job.attempt = None;
                job.savepoint = Some(info.dir.clone());
                job.set_state(
                    JobState::Stopped,
                    Some(format!("stopped with savepoint {}", info.dir)),
                    now,
                );
                self.mark(&job_id);
            }
        }
        self.schedule(now);
    }
}

fn unknown(id: &str) -> Refusal {
    Refusal::NotFound(format!("unknown job {id}"))
}

/// A duration in ms as a timestamp offset.
pub(crate) fn ms(duration: u64) -> i64 {
    i64::try_from(duration).unwrap_or(i64::MAX)
}
