//! Checkpoint storage in an object store (a local directory or `file://` URL; `s3://` and the
//! like with `object_store`'s cloud features): a checkpoint is a directory of state files and
//! a manifest written last, atomically; the newest N complete checkpoints are kept.
//!
//! ```text
//! <dir>/chk-0000000007/
//!     3-0.state           state of node 3, subtask 0 (bincode StateSnapshot)
//!     3-1.state
//!     _manifest.json      written last: job, id, time, every file with its size and checksum
//! <dir>/shared/
//!     <db>-000012.sst     RocksDB SST files, referenced by every checkpoint that holds them
//! ```
//!
//! An SST file is immutable, so a checkpoint references the copy that storage holds already
//! and uploads only new files (incremental checkpoints); shared files that no retained
//! checkpoint references are deleted when a checkpoint completes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::objects::Objects;
use crate::snapshot::{decode, encode, SstFile, StateSnapshot};

const MANIFEST: &str = "_manifest.json";
const SHARED: &str = "shared";

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
    /// Shared files (SSTs) the state references.
    #[serde(default)]
    pub shared: Vec<SharedFile>,
    /// Bytes this checkpoint wrote for the state: the state file and the shared files it was
    /// the first to upload.
    #[serde(default)]
    pub uploaded: u64,
}

/// A file in the shared directory that a state file references.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// Name in the shared directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
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
    /// Total bytes of state, shared files included.
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.bytes + f.shared.iter().map(|s| s.bytes).sum::<u64>())
            .sum()
    }

    /// Bytes this checkpoint uploaded (the rest it references from earlier ones).
    pub fn uploaded(&self) -> u64 {
        self.files.iter().map(|f| f.uploaded).sum()
    }
}

/// A checkpoint read back: its manifest and the snapshots by (node, subtask).
#[derive(Clone, Debug)]
pub struct RestoredCheckpoint {
    /// The manifest.
    pub manifest: Manifest,
    /// The snapshots.
    pub snapshots: HashMap<(usize, usize), StateSnapshot>,
    /// Newer checkpoints that never completed (no manifest: in flight when the job stopped).
    /// Skipping them is normal.
    pub incomplete: Vec<u64>,
    /// Newer complete checkpoints that could not be read, with the reason.
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

/// Checkpoints of one job in a directory of an object store (a local directory, a
/// `file://` URL, or whatever `object_store` URL the build supports).
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    objects: Objects,
    retain: usize,
    /// Where shared files of a remote store are fetched to before a restore reads them.
    fetch_dir: PathBuf,
}

fn chk(id: u64) -> String {
    format!("chk-{id:010}")
}

impl CheckpointStorage {
    /// Storage at `location` (a directory, created if missing, or a URL), keeping the newest
    /// `retain` checkpoints.
    pub fn new(location: impl Into<PathBuf>, retain: usize) -> Result<Self> {
        let objects = Objects::open(&location.into())?;
        let fetch_dir = std::env::temp_dir().join(format!("floe-fetched-{:x}", fnv(objects.location().as_bytes())));
        Ok(CheckpointStorage {
            objects,
            retain: retain.max(1),
            fetch_dir,
        })
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        self.objects.location()
    }

    /// Writes the state of one subtask for checkpoint `id`: uploads the SST files of its
    /// database snapshots that storage does not hold yet (then removes their local
    /// directory), and writes the rest as one state file.
    pub fn write_state(&self, id: u64, node: usize, subtask: usize, snapshot: &StateSnapshot) -> Result<StateFile> {
        let mut shared = Vec::new();
        let mut uploaded = 0;
        for native in &snapshot.native {
            for sst in &native.sst {
                uploaded += self.upload_shared(sst)?;
                shared.push(SharedFile {
                    name: sst.shared_name.clone(),
                    bytes: sst.bytes,
                });
            }
            if let Some(local) = &native.local_dir {
                let _ = fs::remove_dir_all(local);
                // The database's directory, if its backend is gone and this was all it held.
                if let Some(parent) = local.parent() {
                    let _ = fs::remove_dir(parent);
                }
            }
        }
        let bytes = encode(snapshot)?;
        let file = format!("{node}-{subtask}.state");
        let (len, checksum) = (bytes.len() as u64, fnv(&bytes));
        self.objects.put(&format!("{}/{file}", chk(id)), bytes)?;
        Ok(StateFile {
            node,
            subtask,
            file,
            bytes: len,
            checksum,
            shared,
            uploaded: uploaded + len,
        })
    }

    /// Uploads an SST file into the shared directory unless it is there already; returns the
    /// bytes uploaded.
    fn upload_shared(&self, sst: &SstFile) -> Result<u64> {
        let rel = format!("{SHARED}/{}", sst.shared_name);
        if self.objects.size(&rel)? == Some(sst.bytes) {
            return Ok(0);
        }
        self.objects.put_file(&rel, &sst.path)?;
        Ok(sst.bytes)
    }

    /// Copies a state file of checkpoint `from` into checkpoint `to` (the state of a task
    /// that finished before `to` was taken).
    pub fn copy_state(&self, from: u64, to: u64, file: &StateFile) -> Result<StateFile> {
        let bytes = self.objects.get(&format!("{}/{}", chk(from), file.file))?;
        self.objects.put(&format!("{}/{}", chk(to), file.file), bytes)?;
        Ok(StateFile {
            uploaded: 0,
            ..file.clone()
        })
    }

    /// Copies complete checkpoint `id`, with the shared files it references, to `target` (a
    /// savepoint location), laid out so that `CheckpointStorage::new(target)` restores it; the
    /// manifest is copied last.
    pub fn copy_checkpoint(&self, id: u64, target: &Path) -> Result<()> {
        let to = Objects::open(target)?;
        let manifest = self.read_manifest(id)?;
        for f in manifest.files.iter().flat_map(|f| &f.shared) {
            to.copy_from(&self.objects, &format!("{SHARED}/{}", f.name))?;
        }
        let dir = chk(id);
        let mut names = self.objects.files(&dir)?;
        names.sort_by_key(|n| n == MANIFEST);
        for name in names {
            to.copy_from(&self.objects, &format!("{dir}/{name}"))?;
        }
        Ok(())
    }

    /// Completes a checkpoint by writing its manifest, then drops checkpoints beyond the
    /// newest `retain` complete ones (and older incomplete ones) and the shared files only
    /// they referenced.
    pub fn complete(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StateError::Serialization(e.to_string()))?;
        self.objects
            .put(&format!("{}/{MANIFEST}", chk(manifest.checkpoint_id)), json)?;
        self.prune(manifest.checkpoint_id)
    }

    /// The highest checkpoint id in storage, complete or not.
    pub fn newest_id(&self) -> Result<Option<u64>> {
        Ok(self.ids()?.last().copied())
    }

    fn ids(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .objects
            .dirs()?
            .iter()
            .filter_map(|d| d.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn prune(&self, newest: u64) -> Result<()> {
        let mut complete = Vec::new();
        for id in self.ids()? {
            if id <= newest && self.objects.size(&format!("{}/{MANIFEST}", chk(id)))?.is_some() {
                complete.push(id);
            }
        }
        let keep_from = complete.len().saturating_sub(self.retain);
        let oldest_kept = complete.get(keep_from).copied().unwrap_or(newest);
        for id in self.ids()? {
            if id < oldest_kept {
                self.objects.delete_dir(&chk(id))?;
            }
        }
        self.delete_unreferenced_shared()
    }

    /// Deletes shared files that no complete checkpoint in storage references (at most one
    /// checkpoint is in flight, and it completes before the next prune).
    fn delete_unreferenced_shared(&self) -> Result<()> {
        let mut referenced = std::collections::HashSet::new();
        for id in self.ids()? {
            if let Ok(m) = self.read_manifest(id) {
                referenced.extend(m.files.into_iter().flat_map(|f| f.shared).map(|f| f.name));
            }
        }
        for name in self.objects.files(SHARED)? {
            if !referenced.contains(&name) {
                self.objects.delete(&format!("{SHARED}/{name}"))?;
            }
        }
        Ok(())
    }

    fn read_manifest(&self, id: u64) -> Result<Manifest> {
        let dir = chk(id);
        let text = self.objects.get(&format!("{dir}/{MANIFEST}"))?;
        serde_json::from_slice(&text).map_err(|e| StateError::Storage(format!("manifest of {dir} is invalid: {e}")))
    }

    /// Where restores read shared file `name`: in place for a local store, else fetched to
    /// this machine (once: shared files never change).
    fn readable_shared(&self, name: &str, bytes: u64) -> Result<PathBuf> {
        let rel = format!("{SHARED}/{name}");
        let found = self.objects.size(&rel)?;
        if found != Some(bytes) {
            return Err(StateError::Storage(format!(
                "shared file {rel} in {} is missing or corrupt ({found:?} bytes, expected {bytes})",
                self.location()
            )));
        }
        if let Some(path) = self.objects.local_path(&rel) {
            return Ok(path);
        }
        let path = self.fetch_dir.join(name);
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(bytes) {
            let io = |e: std::io::Error| StateError::Storage(format!("fetching {rel} to {}: {e}", path.display()));
            fs::create_dir_all(&self.fetch_dir).map_err(io)?;
            let tmp = path.with_extension("part");
            fs::write(&tmp, self.objects.get(&rel)?).map_err(io)?;
            fs::rename(&tmp, &path).map_err(io)?;
        }
        Ok(path)
    }

    /// Reads and checks checkpoint `id`.
    pub fn load(&self, id: u64) -> Result<RestoredCheckpoint> {
        let dir = chk(id);
        let manifest = self.read_manifest(id)?;
        let mut snapshots = HashMap::new();
        for f in &manifest.files {
            let rel = format!("{dir}/{}", f.file);
            let bytes = self.objects.get(&rel)?;
            if bytes.len() as u64 != f.bytes || fnv(&bytes) != f.checksum {
                return Err(StateError::Storage(format!(
                    "{rel} in {} is corrupt: {} bytes, expected {}",
                    self.location(),
                    bytes.len(),
                    f.bytes
                )));
            }
            let mut snapshot = decode::<StateSnapshot>(&bytes)?;
            for sst in snapshot.native.iter_mut().flat_map(|n| n.sst.iter_mut()) {
                sst.path = self.readable_shared(&sst.shared_name, sst.bytes)?;
            }
            snapshots.insert((f.node, f.subtask), snapshot);
        }
        Ok(RestoredCheckpoint {
            manifest,
            snapshots,
            incomplete: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// The newest complete, intact checkpoint; newer ones that are partial or corrupt are
    /// skipped and reported in [`RestoredCheckpoint::skipped`].
    pub fn latest(&self) -> Result<Option<RestoredCheckpoint>> {
        let mut incomplete = Vec::new();
        let mut skipped = Vec::new();
        for id in self.ids()?.into_iter().rev() {
            if self.objects.size(&format!("{}/{MANIFEST}", chk(id)))?.is_none() {
                incomplete.push(id);
                continue;
            }
            match self.load(id) {
                Ok(mut r) => {
                    r.incomplete = incomplete;
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
        let f = dir.path().join("chk-0000000004/0-0.state");
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
        assert_eq!(r.incomplete, vec![5]);
        assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
        assert!(r.skipped[0].contains("checkpoint 4") && r.skipped[0].contains("corrupt"));
    }
}
