//! The local working directory of a run's RocksDB state, and cleaning up after runs that
//! died without doing it themselves.
//!
//! Every run of a job keeps its databases in `<state dir>/<job>-<attempt>/`, holding an
//! exclusive lock on `<that dir>/.lock` for as long as it runs. A run that ends removes its
//! directory; a run killed with SIGKILL cannot, so each new run of the job removes the
//! directories of its earlier runs whose lock nobody holds any more (the kernel released it
//! with the process). Directories of runs still alive keep their lock and are left alone.
//!
//! State is the job's data: the state directory and every run's directory are private to
//! the user the job runs as (mode 0700, see [`private_dir`]), and the default state
//! directory is one per user ([`default_state_dir`]).

use std::fs::{self, File, TryLockError};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::{Result, RuntimeError};

const LOCK: &str = ".lock";

/// A run's claimed state directory; removed when dropped.
#[derive(Debug)]
pub(crate) struct AttemptDir {
    path: PathBuf,
    _lock: File,
}

/// The directory of run `attempt` of `job` below `state_dir`: the one place that names it,
/// for the run that claims it and the subtasks that keep their state in it.
pub(crate) fn run_dir(state_dir: &Path, job: &str, attempt: u64) -> PathBuf {
    state_dir.join(format!("{job}-{attempt:x}"))
}

impl AttemptDir {
    /// Creates and locks `<state_dir>/<job>-<attempt>`, then removes the unlocked
    /// directories earlier runs of `job` left behind.
    pub(crate) fn claim(state_dir: &Path, job: &str, attempt: u64) -> Result<AttemptDir> {
        let path = run_dir(state_dir, job, attempt);
        let io = |what: &str, p: &Path, e: std::io::Error| {
            RuntimeError::external(format!("{what} state directory {}", p.display()), e)
        };
        // Made and locked under a name the sweep of a run starting at the same time skips,
        // then renamed: a visible directory is always locked by its run (the lock, an open
        // file, moves with it).
        let staging = state_dir.join(format!(".{job}-{attempt:x}.new"));
        private_dir(state_dir).map_err(|e| io("creating", state_dir, e))?;
        private_dir(&staging).map_err(|e| io("creating", &staging, e))?;
        let lock_path = staging.join(LOCK);
        let lock = File::create(&lock_path).map_err(|e| io("creating", &lock_path, e))?;
        lock.try_lock().map_err(|e| {
            RuntimeError::Internal(format!("locking {}: {e} (is the run id reused?)", lock_path.display()))
        })?;
        fs::rename(&staging, &path).map_err(|e| io("naming", &path, e))?;
        sweep(state_dir, job, &path);
        Ok(AttemptDir { path, _lock: lock })
    }
}

impl Drop for AttemptDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %self.path.display(), %e, "could not remove the state directory of this run");
            }
        }
    }
}

/// The user this process runs as (the owner of `/proc/self`), if it can be told.
fn current_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The default local state directory: `<temp dir>/floe-state-<uid>`, one per user, so that
/// no user's jobs read or clutter another's.
pub fn default_state_dir() -> PathBuf {
    let name = match current_uid() {
        Some(uid) => format!("floe-state-{uid}"),
        None => "floe-state".to_string(),
    };
    std::env::temp_dir().join(name)
}

/// Creates `dir` (and missing parents, all mode 0700) and makes sure that only this user
/// can enter it: an existing directory that others could read is restricted to 0700, and
/// one that belongs to another user is refused (`PermissionDenied`, saying so).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    if let Some(uid) = current_uid() {
        if meta.uid() != uid {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to another user (uid {}): choose a directory of your own",
                    dir.display(),
                    meta.uid()
                ),
            ));
        }
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Removes `<state_dir>/<job>-*` directories other than `mine` whose lock is free.
fn sweep(state_dir: &Path, job: &str, mine: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else { return };
    let prefix = format!("{job}-");
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(attempt) = name.strip_prefix(&prefix) else {
            continue;
        };
        if path == mine || attempt.is_empty() || !attempt.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        // A directory without a lock file is being created right now, or is not ours.
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        match lock.try_lock() {
            Ok(()) => {
                info!(dir = %path.display(), "removing the state directory of a run that did not end cleanly");
                if let Err(e) = fs::remove_dir_all(&path) {
                    warn!(dir = %path.display(), %e, "could not remove a stale state directory");
                }
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                warn!(dir = %path.display(), %e, "could not check whether a state directory is in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_go_and_live_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        // A run that died: its directory is there, its lock free.
        let dead = root.path().join("job-1a");
        fs::create_dir_all(dead.join("0-0")).unwrap();
        File::create(dead.join(LOCK)).unwrap();
        // A run still alive (in this process) holds its lock.
        let alive = AttemptDir::claim(root.path(), "job", 0x2b).unwrap();
        // Another job's directory and a directory without a lock are not touched.
        let other = root.path().join("other-1a");
        fs::create_dir_all(&other).unwrap();
        File::create(other.join(LOCK)).unwrap();
        let unlocked = root.path().join("job-3c");
        fs::create_dir_all(&unlocked).unwrap();

        let me = AttemptDir::claim(root.path(), "job", 0x4d).unwrap();
        assert!(!dead.exists(), "the dead run's directory is removed");
        assert!(alive.path.exists() && other.exists() && unlocked.exists());
        let mine = me.path.clone();
        drop(me);
        assert!(!mine.exists(), "a run removes its own directory when it ends");
        assert!(alive.path.exists());
    }

    #[test]
    fn state_directories_are_private() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("a/state");
        let run = AttemptDir::claim(&state, "job", 1).unwrap();
        for dir in [state.clone(), run.path.clone()] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        // An existing directory others can read is restricted.
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);
        let default = default_state_dir();
        assert!(
            default
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("floe-state-"),
            "one default per user: {}",
            default.display()
        );
    }
}
