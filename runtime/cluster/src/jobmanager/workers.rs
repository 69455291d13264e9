//! The state machine's side facing task managers and workers: heartbeats (worker exits),
//! hellos and the peer list, events, commands for worker 0, and what a failed attempt
//! leads to (a delayed restart or the job's failure).

use crate::protocol::{
    CheckpointInfo, Heartbeat, JobState, Peers, SavepointInfo, TmCommand, WorkerCommand, WorkerEvent, WorkerState,
};

use super::cluster::{ms, Cluster, Refusal};
use super::model::{restart_delay, WorkerMetrics};

/// Characters of a worker's stderr kept in an exception message.
const STDERR_TAIL: usize = 2_000;

impl Cluster {
    /// Takes a heartbeat. Answers `false` when the task manager is unknown (it must register
    /// again).
    pub fn heartbeat(&mut self, tm_id: &str, hb: &Heartbeat, now: i64) -> bool {
        let Some(tm) = self.tms.get_mut(tm_id) else {
            return false;
        };
        tm.last_heartbeat = now;
        for status in &hb.workers {
            // `None`: a worker this job manager does not run here (an older job manager's,
            // or one already dealt with). Else whether its attempt is over, and whether its
            // exit is news.
            let live = self
                .attempts
                .get(&status.attempt)
                .and_then(|a| a.workers.get(status.worker).map(|w| (a, w)))
                .filter(|(_, w)| w.tm == tm_id)
                .map(|(a, w)| (a.over || w.released, w.exited.is_none()));
            let (attempt, worker) = (status.attempt, status.worker);
            match &status.state {
                WorkerState::Running if live.is_none_or(|(dead, _)| dead) => {
                    self.push_tm_command(tm_id, TmCommand::Kill { attempt, worker });
                }
                WorkerState::Running => {}
                WorkerState::Exited { code, stderr } => {
                    self.push_tm_command(tm_id, TmCommand::Forget { attempt, worker });
                    if live.is_some_and(|(_, news)| news) {
                        self.worker_exited(attempt, worker, *code, stderr, now);
                    }
                }
            }
        }
        true
    }

    fn push_tm_command(&mut self, tm_id: &str, command: TmCommand) {
        if let Some(tm) = self.tms.get_mut(tm_id) {
            if !tm.commands.contains(&command) {
                tm.commands.push(command);
            }
        }
    }

    /// Takes the commands queued for a task manager; `None` when it is unknown.
    pub fn take_tm_commands(&mut self, tm_id: &str) -> Option<Vec<TmCommand>> {
        self.tms.get_mut(tm_id).map(|tm| std::mem::take(&mut tm.commands))
    }

    /// Whether a task manager has commands waiting (or is unknown).
    pub fn tm_has_commands(&self, tm_id: &str) -> bool {
        self.tms.get(tm_id).is_none_or(|tm| !tm.commands.is_empty())
    }

    fn worker_exited(&mut self, attempt_id: u64, w: usize, code: Option<i32>, stderr: &str, now: i64) {
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return;
        };
        let Some(worker) = attempt.workers.get_mut(w) else {
            return;
        };
        worker.exited = Some(code);
        worker.released = true;
        let finished = worker.finished;
        let place = format!("worker {w} of attempt {attempt_id} on {} ({})", worker.tm, worker.host);
        let over = attempt.over;
        let stopping = attempt.stop.as_ref().is_some_and(|s| s.done.is_some());
        if over {
            self.prune(attempt_id);
            self.schedule(now);
            return;
        }
        match code {
            Some(0) if finished || stopping => self.check_attempt_end(attempt_id, now),
            Some(0) => self.fail_attempt(
                attempt_id,
                format!("{place} exited with code 0 before its tasks finished{}", tail(stderr)),
                now,
            ),
            Some(code) => self.fail_attempt(
                attempt_id,
                format!("{place} exited with code {code}{}", tail(stderr)),
                now,
            ),
            None => self.fail_attempt(
                attempt_id,
                format!("{place} was killed by a signal{}", tail(stderr)),
                now,
            ),
        }
        self.schedule(now);
    }

    /// After a clean exit: a stop completes, or the job finishes, once every worker exited.
    fn check_attempt_end(&mut self, attempt_id: u64, now: i64) {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return;
        };
        if !attempt.workers.iter().all(|w| w.exited == Some(Some(0))) {
            return;
        }
        if attempt.stop.as_ref().is_some_and(|s| s.done.is_some()) {
            self.finish_stop(attempt_id, now);
            return;
        }
        let job_id = attempt.job.clone();
        self.end_attempt(attempt_id, "the job finished");
        if let Some(job) = self.jobs.get_mut(&job_id) {
            if job.attempt == Some(attempt_id) {
                job.attempt = None;
                job.set_state(JobState::Finished, None, now);
                self.mark(&job_id);
            }
        }
    }

    /// Fails an attempt: its other workers are killed, the failure recorded, and the job
    /// restarts after the strategy's delay or fails for good.
    pub(super) fn fail_attempt(&mut self, attempt_id: u64, message: String, now: i64) {
        let Some(attempt) = self.attempts.get(&attempt_id) else {
            return;
        };
        if attempt.over {
            return;
        }
        let job_id = attempt.job.clone();
        self.end_attempt(attempt_id, &format!("attempt {attempt_id} failed: {message}"));
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.attempt != Some(attempt_id) {
            return;
        }
        job.attempt = None;
        job.push_exception(attempt_id, message.clone(), now);
        match restart_delay(&job.restart, job.restarts_since_resume) {
            Some(delay) => {
                job.restarts += 1;
                job.restarts_since_resume += 1;
                job.restart_at = Some(now.saturating_add(ms(delay)));
                job.set_state(
                    JobState::Restarting,
                    Some(format!("{message}; restarting in {delay} ms")),
                    now,
                );
            }
            None => {
                let why = if job.restarts_since_resume == 0 {
                    "the restart strategy allows no restarts".to_string()
                } else {
                    format!(
                        "restart attempts exhausted after {} restarts",
                        job.restarts_since_resume
                    )
                };
                job.set_state(JobState::Failed, Some(format!("{why}: {message}")), now);
            }
        }
        self.mark(&job_id);
    }

    /// Drops task managers silent for longer than the timeout; their attempts fail.
    pub(super) fn expire_task_managers(&mut self, now: i64) -> bool {
        let timeout = ms(self.config.heartbeat_timeout_ms);
        let lost: Vec<String> = self
            .tms
            .values()
            .filter(|tm| now.saturating_sub(tm.last_heartbeat) > timeout)
            .map(|tm| tm.id.clone())
            .collect();
        for tm_id in &lost {
            let Some(tm) = self.tms.remove(tm_id) else {
                continue;
            };
            let silent = now.saturating_sub(tm.last_heartbeat);
            let affected: Vec<u64> = self
                .attempts
                .values()
                .filter(|a| a.workers.iter().any(|w| w.tm == *tm_id && !w.released))
                .map(|a| a.id)
                .collect();
            for attempt_id in affected {
                let mut worker = None;
                if let Some(attempt) = self.attempts.get_mut(&attempt_id) {
                    for (w, wk) in attempt.workers.iter_mut().enumerate() {
                        if wk.tm == *tm_id && !wk.released {
                            wk.released = true;
                            worker.get_or_insert(w);
                        }
                    }
                }
                let message = format!(
                    "task manager {tm_id} ({}, pid {}) was lost: no heartbeat for {silent} ms; it ran worker {} of attempt {attempt_id}",
                    tm.host,
                    tm.pid,
                    worker.unwrap_or(0)
                );
                self.fail_attempt(attempt_id, message, now);
                self.prune(attempt_id);
            }
        }
        if !lost.is_empty() {
            self.schedule(now);
        }
        !lost.is_empty()
    }

    /// A worker's hello with its data address.
    pub fn hello(&mut self, attempt_id: u64, w: usize, addr: String) -> Result<(), Refusal> {
        let attempt = self
            .attempts
            .get_mut(&attempt_id)
            .ok_or_else(|| unknown_attempt(attempt_id))?;
        let workers = attempt.workers.len();
        let worker = attempt.workers.get_mut(w).ok_or_else(|| {
            Refusal::NotFound(format!(
                "attempt {attempt_id} has no worker {w}: it has {workers} workers"
            ))
        })?;
        if addr.trim().is_empty() {
            return Err(Refusal::BadRequest("addr is empty: give host:port".into()));
        }
        worker.addr = Some(addr);
        Ok(())
    }

    /// The peer list once every worker said hello, or `cancelled` once the attempt is
    /// over (or unknown); `None` while hellos are missing.
    pub fn peers(&self, attempt_id: u64) -> Option<Peers> {
        let Some(attempt) = self.attempts.get(&attempt_id).filter(|a| !a.over) else {
            return Some(Peers {
                addrs: None,
                cancelled: true,
            });
        };
        let addrs: Option<Vec<String>> = attempt.workers.iter().map(|w| w.addr.clone()).collect();
        addrs.map(|addrs| Peers {
            addrs: Some(addrs),
            cancelled: false,
        })
    }

    /// Takes the commands queued for worker 0 of an attempt.
    pub fn take_worker_commands(&mut self, attempt_id: u64) -> Result<Vec<WorkerCommand>, Refusal> {
        let attempt = self
            .attempts
            .get_mut(&attempt_id)
            .ok_or_else(|| unknown_attempt(attempt_id))?;
        Ok(std::mem::take(&mut attempt.commands))
    }

    /// Whether an attempt has commands waiting, is over or unknown (a long poll answers).
    pub fn worker_commands_ready(&self, attempt_id: u64) -> bool {
        self.attempts
            .get(&attempt_id)
            .is_none_or(|a| a.over || !a.commands.is_empty())
    }

    /// Events from a worker. Events of an attempt that is over are ignored.
    pub fn events(&mut self, attempt_id: u64, events: Vec<WorkerEvent>, now: i64) -> Result<(), Refusal> {
        let attempt = self
            .attempts
            .get(&attempt_id)
            .ok_or_else(|| unknown_attempt(attempt_id))?;
        let workers = attempt.workers.len();
        let job_id = attempt.job.clone();
        for event in events {
            let Some(attempt) = self.attempts.get_mut(&attempt_id).filter(|a| !a.over) else {
                return Ok(());
            };
            let check = |w: usize| {
                if w < workers {
                    Ok(w)
                } else {
                    Err(Refusal::BadRequest(format!(
                        "worker {w} is out of range: attempt {attempt_id} has {workers} workers"
                    )))
                }
            };
            match event {
                WorkerEvent::Running { worker, graph } => {
                    let w = check(worker)?;
                    attempt.workers[w].running = true;
                    let all = attempt.workers.iter().all(|w| w.running);
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        if graph.is_some() {
                            job.graph = graph;
                        }
                        if all && job.state == JobState::Deploying && job.attempt == Some(attempt_id) {
                            job.set_state(JobState::Running, None, now);
                        }
                    }
                    self.mark(&job_id);
                }
                WorkerEvent::CheckpointCompleted {
                    id,
                    bytes,
                    duration_ms,
                    is_savepoint,
                } => {
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        job.push_checkpoint(CheckpointInfo {
                            id,
                            bytes,
                            duration_ms,
                            completed_at: now,
                            is_savepoint,
                            failure: None,
                        });
                        job.checkpoints_completed += 1;
                        if !is_savepoint {
                            job.last_checkpoint = Some(id);
                            job.resumed_from = None;
                        }
                    }
                    self.mark(&job_id);
                }
                WorkerEvent::CheckpointFailed { id, reason } => {
                    if let Some(job) = self.jobs.get_mut(&job_id) {
                        job.push_checkpoint(CheckpointInfo {
                            id,
                            bytes: 0,
                            duration_ms: 0,
                            completed_at: now,
                            is_savepoint: false,
                            failure: Some(reason),
                        });
                        job.checkpoints_failed += 1;
                    }
                    self.mark(&job_id);
                }
                WorkerEvent::SavepointCompleted {
                    request,
                    dir,
                    checkpoint,
                } => {
                    let info = SavepointInfo {
                        job: job_id.clone(),
                        dir,
                        checkpoint,
                    };
                    match attempt.stop.as_mut().filter(|s| s.request == request) {
                        Some(stop) => {
                            stop.done = Some(info);
                            stop.grace_until = Some(now.saturating_add(ms(self.config.stop_grace_ms)));
                            self.check_attempt_end(attempt_id, now);
                        }
                        None => {
                            if let Some(pending) = self.requests.get_mut(&request) {
                                pending.result = Some(Ok(info));
                            }
                        }
                    }
                }
                WorkerEvent::Metrics {
                    worker,
                    prometheus,
                    operators,
                } => {
                    let w = check(worker)?;
                    attempt.workers[w].metrics = Some(WorkerMetrics { prometheus, operators });
                }
                WorkerEvent::Finished { worker } => {
                    let w = check(worker)?;
                    attempt.workers[w].finished = true;
                }
                WorkerEvent::Failed { worker, error } => {
                    let w = check(worker)?;
                    let wk = &attempt.workers[w];
                    let message = format!(
                        "worker {w} of attempt {attempt_id} on {} ({}) failed: {error}",
                        wk.tm, wk.host
                    );
                    self.fail_attempt(attempt_id, message, now);
                    self.schedule(now);
                }
            }
        }
        Ok(())
    }
}

fn unknown_attempt(attempt: u64) -> Refusal {
    Refusal::NotFound(format!("unknown attempt {attempt}"))
}

/// The end of a worker's stderr, as a suffix of a message.
fn tail(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let start = trimmed
        .char_indices()
        .rev()
        .nth(STDERR_TAIL.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    format!("; stderr ends with:\n{}", &trimmed[start..])
}
