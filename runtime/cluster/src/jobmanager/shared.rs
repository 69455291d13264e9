//! What the handlers share: the state machine behind a mutex, the store its changes are
//! written to, the token, and a change counter long polls wait on.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::cluster::Cluster;
use super::store::Store;

/// Longest a long poll is held, whatever it asks.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a long poll asking `wait_ms` is held.
pub(crate) fn poll_wait(wait_ms: Option<u64>) -> Duration {
    Duration::from_millis(wait_ms.unwrap_or(0)).min(MAX_WAIT)
}

/// The job manager's shared state.
pub(crate) struct Shared {
    cluster: Mutex<Cluster>,
    /// The data directory.
    pub store: Store,
    /// The bearer token.
    pub token: String,
    /// Largest artifact accepted.
    pub max_upload_bytes: u64,
    changes: watch::Sender<u64>,
}

impl Shared {
    /// Shares `cluster`.
    pub fn new(cluster: Cluster, store: Store, token: String, max_upload_bytes: u64) -> Self {
        Shared {
            cluster: Mutex::new(cluster),
            store,
            token,
            max_upload_bytes,
            changes: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // A panic while holding the lock leaves a consistent-enough state to keep serving.
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state machine and writes what it changed, without waking waiters.
    pub fn inspect<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        let mut cluster = self.lock();
        let r = f(&mut cluster);
        self.persist(&mut cluster);
        r
    }

    /// Runs `f` on the state machine, writes what it changed and wakes every long poll.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut Cluster, i64) -> R) -> R {
        let r = self.inspect(|c| f(c, now_ms()));
        self.notify();
        r
    }

    /// Wakes every long poll.
    pub fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn persist(&self, cluster: &mut Cluster) {
        for job in cluster.take_dirty_jobs() {
            if let Err(e) = self.store.save_job(&job) {
                tracing::error!("cannot save job {}: {e}", job.id);
            }
        }
        if let Some(state) = cluster.take_dirty_state() {
            if let Err(e) = self.store.save_state(&state) {
                tracing::error!("cannot save state.json: {e}");
            }
        }
    }

    /// Calls `check` now and after every change until it answers, for at most `wait`;
    /// `None` when time ran out or the job manager shuts down.
    pub async fn wait_for<R>(&self, wait: Duration, mut check: impl FnMut(&mut Cluster) -> Option<R>) -> Option<R> {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            changes.borrow_and_update();
            let (answer, shutting_down) = self.inspect(|c| (check(c), c.shutting_down));
            if answer.is_some() || shutting_down {
                return answer;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }
}

/// Now, in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
