//! Checkpoint storage on a file system: a checkpoint is a directory of state files and a
//! manifest written last, atomically; the newest N complete checkpoints are kept.
//!
//! ```text
//! <dir>/chk-0000000007/
//!     3-0.state           state of node 3, subtask 0 (bincode StateSnapshot)
//!     3-1.state
//!     _manifest.json      written last: job, id, time, every file with its size and checksum
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::snapshot::{decode, encode, StateSnapshot};

const MANIFEST: &str = "_manifest.json";

/// One state file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Graph node (operator) the state belongs to.
    pub node: usize,
    /// Subtask index.
    pub subtask: usize,
    /// File name inside the checkpoint directory.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// FNV-1a 64 of the contents.
    pub checksum: u64,
}

/// What a completed checkpoint consists of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Name of the job.
    pub job: String,
    /// Checkpoint id.
    pub checkpoint_id: u64,
    /// When it was triggered (ms since the epoch).
    pub timestamp: i64,
    /// Whether the user asked for it.
    pub is_savepoint: bool,
    /// Parallelism of every node when it was taken, by node.
    pub parallelism: Vec<usize>,
    /// Every state file.
    pub files: Vec<StateFile>,
}

impl Manifest {
    /// Total bytes of state.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// A checkpoint read back: its manifest and the snapshots by (node, subtask).
#[derive(Clone, Debug)]
pub struct RestoredCheckpoint {
    /// The manifest.
    pub manifest: Manifest,
    /// The snapshots.
    pub snapshots: HashMap<(usize, usize), StateSnapshot>,
    /// Newer checkpoints that were skipped, with the reason.
    pub skipped: Vec<String>,
}

impl RestoredCheckpoint {
    /// The snapshots of all subtasks of `node`, in subtask order.
    pub fn node_snapshots(&self, node: usize) -> Vec<StateSnapshot> {
        let p = self.manifest.parallelism.get(node).copied().unwrap_or(0);
        (0..p).filter_map(|s| self.snapshots.get(&(node, s)).cloned()).collect()
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StateError {
    move |e| StateError::Storage(format!("{context}: {e}"))
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes).map_err(io(format!("writing {}", tmp.display())))?;
    f.sync_all().map_err(io(format!("syncing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))
}

/// Checkpoints of one job in a directory.
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    dir: PathBuf,
    retain: usize,
}

impl CheckpointStorage {
    /// Storage in `dir` (created if missing), keeping the newest `retain` checkpoints.
    pub fn new(dir: impl Into<PathBuf>, retain: usize) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(format!("creating checkpoint directory {}", dir.display())))?;
        Ok(CheckpointStorage {
            dir,
            retain: retain.max(1),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn chk_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id:010}"))
    }

    /// Writes the state of one subtask for checkpoint `id`.
    pub fn write_state(&self, id: u64, node: usize, subtask: usize, snapshot: &StateSnapshot) -> Result<StateFile> {
        let dir = self.chk_dir(id);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let bytes = encode(snapshot)?;
        let file = format!("{node}-{subtask}.state");
        write_atomically(&dir.join(&file), &bytes)?;
        Ok(StateFile {
            node,
            subtask,
            file,
            bytes: bytes.len() as u64,
            checksum: fnv(&bytes),
        })
    }

    /// Copies a state file of checkpoint `from` into checkpoint `to` (the state of a task
    /// that finished before `to` was taken).
    pub fn copy_state(&self, from: u64, to: u64, file: &StateFile) -> Result<StateFile> {
        let dir = self.chk_dir(to);
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let src = self.chk_dir(from).join(&file.file);
        fs::copy(&src, dir.join(&file.file)).map_err(io(format!("copying {}", src.display())))?;
        Ok(file.clone())
    }

    /// Copies complete checkpoint `id` into `target` (a savepoint directory), laid out so that
    /// `CheckpointStorage::new(target)` restores it; the manifest is copied last.
    pub fn copy_checkpoint(&self, id: u64, target: &Path) -> Result<()> {
        let from = self.chk_dir(id);
        let to = target.join(format!("chk-{id:010}"));
        fs::create_dir_all(&to).map_err(io(format!("creating {}", to.display())))?;
        let entries = fs::read_dir(&from).map_err(io(format!("listing {}", from.display())))?;
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by_key(|n| n == MANIFEST);
        for name in names {
            fs::copy(from.join(&name), to.join(&name)).map_err(io(format!("copying {name} to {}", to.display())))?;
        }
        Ok(())
    }

    /// Completes a checkpoint by writing its manifest, then drops checkpoints beyond the
    /// newest `retain` complete ones (and older incomplete ones).
    pub fn complete(&self, manifest: &Manifest) -> Result<()> {
        let dir = self.chk_dir(manifest.checkpoint_id);
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StateError::Serialization(e.to_string()))?;
        write_atomically(&dir.join(MANIFEST), &json)?;
        self.prune(manifest.checkpoint_id)
    }

    /// The highest checkpoint id in the directory, complete or not.
    pub fn newest_id(&self) -> Result<Option<u64>> {
        Ok(self.ids()?.last().copied())
    }

    fn ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(io(format!("listing {}", self.dir.display())))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn prune(&self, newest: u64) -> Result<()> {
        let complete: Vec<u64> = self
            .ids()?
            .into_iter()
            .filter(|id| *id <= newest && self.chk_dir(*id).join(MANIFEST).exists())
            .collect();
        let keep_from = complete.len().saturating_sub(self.retain);
        let oldest_kept = complete.get(keep_from).copied().unwrap_or(newest);
        for id in self.ids()? {
            if id < oldest_kept {
                let _ = fs::remove_dir_all(self.chk_dir(id));
            }
        }
        Ok(())
    }

    /// Reads and checks checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<RestoredCheckpoint> {
        let dir = self.chk_dir(id);
        let text = fs::read(dir.join(MANIFEST)).map_err(io(format!("reading the manifest of {}", dir.display())))?;
        let manifest: Manifest = serde_json::from_slice(&text)
            .map_err(|e| StateError::Storage(format!("manifest of {} is invalid: {e}", dir.display())))?;
        let mut snapshots = HashMap::new();
        for f in &manifest.files {
            let path = dir.join(&f.file);
            let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
            if bytes.len() as u64 != f.bytes || fnv(&bytes) != f.checksum {
                return Err(StateError::Storage(format!(
                    "{} is corrupt: {} bytes, expected {}",
                    path.display(),
                    bytes.len(),
                    f.bytes
                )));
            }
            snapshots.insert((f.node, f.subtask), decode::<StateSnapshot>(&bytes)?);
        }
        Ok(RestoredCheckpoint {
            manifest,
            snapshots,
            skipped: Vec::new(),
        })
    }

    /// The newest complete, intact checkpoint; newer ones that are partial or corrupt are
    /// skipped and reported in [`RestoredCheckpoint::skipped`].
    pub fn latest(&self) -> Result<Option<RestoredCheckpoint>> {
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            match self.load(id) {
                Ok(mut r) => {
                    r.skipped = skipped;
                    return Ok(Some(r));
                }
                Err(e) => skipped.push(format!("checkpoint {id}: {e}")),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(v: u8) -> StateSnapshot {
        let mut s = StateSnapshot::default();
        s.add_keyed(1, "state/x", vec![v; 100]);
        s
    }

    fn checkpoint(st: &CheckpointStorage, id: u64) {
        let files = vec![st.write_state(id, 0, 0, &snapshot(id as u8)).unwrap()];
        st.complete(&Manifest {
            job: "j".into(),
            checkpoint_id: id,
            timestamp: 0,
            is_savepoint: false,
            parallelism: vec![1],
            files,
        })
        .unwrap();
    }

    #[test]
    fn keeps_the_newest_and_falls_back_past_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let st = CheckpointStorage::new(dir.path(), 2).unwrap();
        assert!(st.latest().unwrap().is_none());
        for id in 1..=4 {
            checkpoint(&st, id);
        }
        assert_eq!(st.ids().unwrap(), vec![3, 4], "newest two kept");
        // A partial checkpoint 5 (no manifest) and a truncated state file in 4.
        st.write_state(5, 0, 0, &snapshot(5)).unwrap();
        let f = st.chk_dir(4).join("0-0.state");
        let len = fs::metadata(&f).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let r = st.latest().unwrap().unwrap();
        assert_eq!(r.manifest.checkpoint_id, 3);
        assert_eq!(r.snapshots[&(0, 0)], snapshot(3));
        assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
        assert!(r.skipped[0].contains("checkpoint 5") && r.skipped[1].contains("corrupt"));
    }
}
