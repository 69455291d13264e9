//! The job manager's files under its data directory: `artifacts/<sha256>` (job binaries,
//! named only by their content), `jobs/<job-id>.json` (each job's record) and `state.json`
//! (counters that must survive a restart). Every record is written atomically: a temporary
//! file in the same directory, fsync, rename.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use floe_runtime::private_dir;

use crate::error::{ClusterError, Result};

use super::model::{JobRecord, PersistedState};

/// Longest display name kept for an artifact.
const MAX_NAME: usize = 64;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The data directory's layout.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    root: PathBuf,
}

impl Store {
    /// Creates the directories below `root` (made absolute).
    pub fn open(root: &Path) -> Result<Self> {
        private_dir(root).map_err(|e| ClusterError::io(format!("creating data directory {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| ClusterError::io(format!("resolving data directory {}", root.display()), e))?;
        let store = Store { root };
        for dir in [store.artifacts_dir(), store.jobs_dir()] {
            private_dir(&dir).map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(store)
    }

    /// The data directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where artifacts are.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Where job records are.
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// The file of an artifact, if `sha256` is a well-formed hash.
    pub fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.artifacts_dir().join(sha256))
    }

    /// Writes a job's record.
    pub fn save_job(&self, job: &JobRecord) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(job).map_err(|e| ClusterError::Other(format!("encoding job {}: {e}", job.id)))?;
        write_atomic(&self.jobs_dir().join(format!("{}.json", job.id)), &json)
    }

    /// Reads every job record; unreadable ones are reported and skipped.
    pub fn load_jobs(&self) -> Result<Vec<JobRecord>> {
        let dir = self.jobs_dir();
        let entries = fs::read_dir(&dir).map_err(|e| ClusterError::io(format!("listing {}", dir.display()), e))?;
        let mut jobs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<JobRecord>(&bytes).map_err(|e| e.to_string()));
            match parsed {
                Ok(job) => jobs.push(job),
                Err(e) => tracing::error!("ignoring job record {}: {e} (fix or remove the file)", path.display()),
            }
        }
        Ok(jobs)
    }

    /// Writes the counters.
    pub fn save_state(&self, state: &PersistedState) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(state).map_err(|e| ClusterError::Other(format!("encoding state.json: {e}")))?;
        write_atomic(&self.root.join("state.json"), &json)
    }

    /// Reads the counters (defaults when there are none yet).
    pub fn load_state(&self) -> Result<PersistedState> {
        let path = self.root.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ClusterError::Config(format!(
                    "{} is damaged ({e}): fix it, or remove it (attempt ids then restart at 1)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PersistedState::default()),
            Err(e) => Err(ClusterError::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// Whether `s` is a sha256 in lowercase hex.
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A temporary file name in `dir` (hidden, unique in this process).
pub(crate) fn temp_path(dir: &Path, what: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{what}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
    let tmp = temp_path(dir, name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ClusterError::io(format!("writing {}", path.display()), e));
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A display name made safe: its last path component, only `[A-Za-z0-9._-]`, at most 64
/// characters; `None` if nothing is left.
pub(crate) fn sanitize_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_NAME)
        .collect();
    (!clean.is_empty() && clean != "." && clean != "..").then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("../../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize_name("a/b").as_deref(), Some("b"));
        assert_eq!(sanitize_name("my job (v2).bin").as_deref(), Some("myjobv2.bin"));
        assert_eq!(sanitize_name(".."), None);
        assert_eq!(sanitize_name("dir/"), None);
        assert_eq!(sanitize_name(&"x".repeat(100)).map(|s| s.len()), Some(64));
    }

    #[test]
    fn hashes_are_checked() {
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"A".repeat(64)));
        assert!(!is_sha256("../x"));
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let state = PersistedState {
            next_attempt: 9,
            ..Default::default()
        };
        store.save_state(&state).unwrap();
        assert_eq!(store.load_state().unwrap(), state);
        let leftovers: Vec<_> = fs::read_dir(store.root())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
