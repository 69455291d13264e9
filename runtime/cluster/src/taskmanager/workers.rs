//! The worker processes of a task manager, by (attempt, worker): what its heartbeats
//! report, and what the job manager's commands change.

use std::collections::BTreeMap;

use crate::protocol::{WorkerState, WorkerStatus};

use super::process::WorkerProcess;

/// One worker slot: a process, or a deploy that failed before one started.
#[derive(Debug)]
enum Entry {
    Process(WorkerProcess),
    /// The binary is being fetched; reported as running (a kill cancels the start).
    Starting,
    /// The worker could not be started; reported as exited with this message.
    NotStarted(String),
}

/// The workers of a task manager.
#[derive(Debug, Default)]
pub struct Workers {
    entries: BTreeMap<(u64, usize), Entry>,
}

impl Workers {
    /// Whether a worker of `attempt` with index `worker` is known (running or exited).
    pub fn contains(&self, attempt: u64, worker: usize) -> bool {
        self.entries.contains_key(&(attempt, worker))
    }

    /// Adds a started worker process.
    pub fn add(&mut self, attempt: u64, worker: usize, process: WorkerProcess) {
        self.entries.insert((attempt, worker), Entry::Process(process));
    }

    /// Notes a worker whose binary is being fetched.
    pub fn add_starting(&mut self, attempt: u64, worker: usize) {
        self.entries.insert((attempt, worker), Entry::Starting);
    }

    /// Whether the worker is still waiting to start (false once killed meanwhile).
    pub fn is_starting(&self, attempt: u64, worker: usize) -> bool {
        matches!(self.entries.get(&(attempt, worker)), Some(Entry::Starting))
    }

    /// Records a worker that could not be started: reported as exited with `message`.
    pub fn add_failed(&mut self, attempt: u64, worker: usize, message: String) {
        self.entries.insert((attempt, worker), Entry::NotStarted(message));
    }

    /// Checks every process for an exit; returns the workers seen exiting now, with their
    /// state.
    pub fn reap(&mut self) -> Vec<((u64, usize), WorkerState)> {
        let mut exited = Vec::new();
        for (key, entry) in &mut self.entries {
            if let Entry::Process(process) = entry {
                match process.reap() {
                    Ok(true) => exited.push((*key, process.state())),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("attempt {} worker {}: {e}", key.0, key.1),
                }
            }
        }
        exited
    }

    /// Every worker's status, for a heartbeat.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.entries
            .iter()
            .map(|(&(attempt, worker), entry)| WorkerStatus {
                attempt,
                worker,
                state: match entry {
                    Entry::Process(process) => process.state(),
                    Entry::Starting => WorkerState::Running,
                    Entry::NotStarted(message) => WorkerState::Exited {
                        code: None,
                        stderr: message.clone(),
                    },
                },
            })
            .collect()
    }

    /// Kills (SIGKILL) and forgets a worker; returns whether it was known.
    pub fn kill(&mut self, attempt: u64, worker: usize) -> bool {
        match self.entries.remove(&(attempt, worker)) {
            Some(Entry::Process(mut process)) => {
                if let Err(e) = process.kill() {
                    tracing::warn!("attempt {attempt} worker {worker}: {e}");
                }
                true
            }
            Some(Entry::NotStarted(_) | Entry::Starting) => true,
            None => false,
        }
    }

    /// Forgets an exited worker. A running one is kept (and false returned): the job
    /// manager must kill it instead.
    pub fn forget(&mut self, attempt: u64, worker: usize) -> bool {
        let exited = match self.entries.get(&(attempt, worker)) {
            Some(Entry::Process(process)) => process.has_exited(),
            Some(Entry::Starting) => false,
            Some(Entry::NotStarted(_)) => true,
            None => return true,
        };
        if exited {
            self.entries.remove(&(attempt, worker));
        }
        exited
    }

    /// Kills and forgets every worker.
    pub fn kill_all(&mut self) {
        let keys: Vec<_> = self.entries.keys().copied().collect();
        for (attempt, worker) in keys {
            self.kill(attempt, worker);
        }
    }

    /// Workers known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no worker is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
