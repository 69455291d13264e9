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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::checksum;
use crate::error::{Result, StateError};
use crate::identity::{assign_state, StateAssignment};
use crate::manifest::{Manifest, OperatorIdentity, SharedFile, StateFile};
use crate::objects::Objects;
use crate::snapshot::{decode, encode, SstFile, StateSnapshot};

const MANIFEST: &str = "_manifest.json";
const SHARED: &str = "shared";
/// Written after every completed checkpoint: the evidence, once the checkpoints themselves
/// are gone, that the directory held some (so that a job never starts afresh over them).
const COMPLETED: &str = "_completed.json";

/// The content of [`COMPLETED`].
#[derive(Debug, Serialize, Deserialize)]
struct Completed {
    job: String,
    checkpoint_id: u64,
}

/// A checkpoint read back: its manifest and the snapshots by (node, subtask).
#[derive(Clone, Debug)]
pub struct RestoredCheckpoint {
    /// Where it was read from (the checkpoint or savepoint directory).
    pub location: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The snapshots.
    pub snapshots: HashMap<(usize, usize), StateSnapshot>,
    /// Newer checkpoints that never completed (no manifest: in flight when the job stopped).
    /// Skipping them is normal.
    pub incomplete: Vec<u64>,
    /// Newer complete checkpoints that could not be restored: id and what is wrong.
    pub skipped: Vec<(u64, String)>,
}

impl RestoredCheckpoint {
    /// The snapshots of all subtasks of `node` (a node of the checkpoint), in subtask order.
    pub fn node_snapshots(&self, node: usize) -> Vec<StateSnapshot> {
        let p = self.manifest.parallelism.get(node).copied().unwrap_or(0);
        (0..p).filter_map(|s| self.snapshots.get(&(node, s)).cloned()).collect()
    }

    /// Whether any subtask of `node` (a node of the checkpoint) holds state.
    pub fn has_state(&self, node: usize) -> bool {
        self.snapshots.iter().any(|((n, _), s)| *n == node && !s.is_empty())
    }

    /// Checks that the checkpoint belongs to job `job` with `operators` (by node), and says
    /// which of its nodes each operator restores; see [`assign_state`].
    pub fn assign(
        &self,
        job: &str,
        operators: &[OperatorIdentity],
        allow_non_restored_state: bool,
    ) -> Result<StateAssignment> {
        assign_state(
            &self.manifest,
            &self.location,
            job,
            operators,
            |node| self.has_state(node),
            allow_non_restored_state,
        )
    }
}

/// Checksums of shared files this process stored or verified: name → (size, checksum, the
/// newest checkpoint that referenced it). A file referenced again is not read again; entries
/// not referenced by the last two checkpoints are forgotten (and read again if they return).
type KnownShared = Arc<Mutex<HashMap<String, (u64, u64, u64)>>>;

/// Checkpoints of one job in a directory of an object store (a local directory, a
/// `file://` URL, or whatever `object_store` URL the build supports).
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    objects: Objects,
    retain: usize,
    /// Where shared files of a remote store are fetched to before a restore reads them.
    fetch_dir: PathBuf,
    known: KnownShared,
}

fn chk(id: u64) -> String {
    format!("chk-{id:010}")
}

fn corrupt(what: String) -> StateError {
    StateError::Storage(what)
}

/// Why a checkpoint cannot be restored, without the "checkpoint storage" prefix.
fn what_is_wrong(e: StateError) -> String {
    match e {
        StateError::Storage(what) => what,
        other => other.to_string(),
    }
}

impl CheckpointStorage {
    /// Storage at `location` (a directory, created if missing, or a URL), keeping the newest
    /// `retain` checkpoints.
    pub fn new(location: impl Into<PathBuf>, retain: usize) -> Result<Self> {
        let objects = Objects::open(&location.into())?;
        let fetch_dir = std::env::temp_dir().join(format!(
            "floe-fetched-{:x}",
            checksum::fnv(objects.location().as_bytes())
        ));
        Ok(CheckpointStorage {
            objects,
            retain: retain.max(1),
            fetch_dir,
            known: KnownShared::default(),
        })
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        self.objects.location()
    }

    /// Writes the state of one subtask for checkpoint `id`: uploads the SST files of its
    /// database snapshots that storage does not hold yet (then removes their local
    /// directory), and writes the rest as one state file. Every file gets a checksum.
    pub fn write_state(&self, id: u64, node: usize, subtask: usize, snapshot: &StateSnapshot) -> Result<StateFile> {
        let mut shared = Vec::new();
        let mut uploaded = 0;
        for native in &snapshot.native {
            for sst in &native.sst {
                let (bytes, checksum) = self.upload_shared(id, sst)?;
                uploaded += bytes;
                shared.push(SharedFile {
                    name: sst.shared_name.clone(),
                    bytes: sst.bytes,
                    checksum: Some(checksum),
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
        if let Ok(mut known) = self.known.lock() {
            known.retain(|_, (_, _, used)| *used + 1 >= id);
        }
        let bytes = encode(snapshot)?;
        let file = format!("{node}-{subtask}.state");
        let (len, checksum) = (bytes.len() as u64, checksum::of_bytes(&bytes));
        self.objects.put(&format!("{}/{file}", chk(id)), bytes)?;
        floe_failpoints::failpoint!("checkpoint.state-written");
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
    /// bytes uploaded and its checksum (known from the restore it came from or an earlier
    /// upload, else read from the local file).
    fn upload_shared(&self, id: u64, sst: &SstFile) -> Result<(u64, u64)> {
        let rel = format!("{SHARED}/{}", sst.shared_name);
        let remembered = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(&sst.shared_name).copied())
            .filter(|(bytes, _, _)| *bytes == sst.bytes)
            .map(|(_, sum, _)| sum);
        let checksum = match sst.checksum.or(remembered) {
            Some(sum) => sum,
            None => {
                let (len, sum) = checksum::of_file(&sst.path)
                    .map_err(|e| StateError::Storage(format!("reading {} to upload it: {e}", sst.path.display())))?;
                if len != sst.bytes {
                    return Err(StateError::Storage(format!(
                        "{} has {len} bytes, the database said {}",
                        sst.path.display(),
                        sst.bytes
                    )));
                }
                sum
            }
        };
        let uploaded = if self.objects.size(&rel)? == Some(sst.bytes) {
            0
        } else {
            self.objects.put_file(&rel, &sst.path)?;
            floe_failpoints::failpoint!("checkpoint.upload-shared");
            sst.bytes
        };
        if let Ok(mut known) = self.known.lock() {
            known.insert(sst.shared_name.clone(), (sst.bytes, checksum, id));
        }
        Ok((uploaded, checksum))
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

    /// Completes a checkpoint by writing its manifest (and the record that the directory
    /// holds completed checkpoints), then drops checkpoints beyond the newest `retain`
    /// complete ones (and older incomplete ones) and the shared files only they referenced.
    pub fn complete(&self, manifest: &Manifest) -> Result<()> {
        let json = manifest.to_json()?;
        floe_failpoints::failpoint!("checkpoint.before-manifest");
        self.objects
            .put(&format!("{}/{MANIFEST}", chk(manifest.checkpoint_id)), json)?;
        floe_failpoints::failpoint!("checkpoint.after-manifest");
        let completed = Completed {
            job: manifest.job.clone(),
            checkpoint_id: manifest.checkpoint_id,
        };
        let json = serde_json::to_vec(&completed).map_err(|e| StateError::Serialization(e.to_string()))?;
        self.objects.put(COMPLETED, json)?;
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

    fn has_manifest(&self, id: u64) -> Result<bool> {
        Ok(self.objects.size(&format!("{}/{MANIFEST}", chk(id)))?.is_some())
    }

    fn prune(&self, newest: u64) -> Result<()> {
        let mut complete = Vec::new();
        for id in self.ids()? {
            if id <= newest && self.has_manifest(id)? {
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
        Manifest::parse(&self.objects.get(&format!("{}/{MANIFEST}", chk(id)))?)
    }

    /// Checks shared file `name` against its manifest entry and returns where restores read
    /// it: in place for a local store, else fetched to this machine (once: shared files never
    /// change). With a checksum (manifest version 2) the whole file is read and summed; without
    /// (version 1), only its size is compared.
    fn verified_shared(&self, entry: &SharedFile) -> Result<PathBuf> {
        let rel = format!("{SHARED}/{}", entry.name);
        let mismatch = |len: u64, sum: Option<u64>| {
            let size = if len != entry.bytes {
                format!("{len} bytes, the manifest says {}", entry.bytes)
            } else {
                format!("{len} bytes as expected")
            };
            match (sum, entry.checksum) {
                (Some(got), Some(want)) if len == entry.bytes && got != want => corrupt(format!(
                    "shared file {rel} is corrupt: checksum {got:016x}, the manifest says {want:016x}"
                )),
                _ => corrupt(format!("shared file {rel} is corrupt: {size}")),
            }
        };
        let matches = |len: u64, sum: u64| len == entry.bytes && entry.checksum.is_none_or(|want| want == sum);
        if let Some(path) = self.objects.local_path(&rel) {
            if entry.checksum.is_none() {
                return match self.objects.size(&rel)? {
                    Some(len) if len == entry.bytes => Ok(path),
                    Some(len) => Err(mismatch(len, None)),
                    None => Err(corrupt(format!("shared file {rel} is missing"))),
                };
            }
            return match checksum::of_file(&path) {
                Ok((len, sum)) if matches(len, sum) => Ok(path),
                Ok((len, sum)) => Err(mismatch(len, Some(sum))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(corrupt(format!("shared file {rel} is missing")))
                }
                Err(e) => Err(corrupt(format!("shared file {rel} cannot be read: {e}"))),
            };
        }
        let path = self.fetch_dir.join(&entry.name);
        if let Ok((len, sum)) = checksum::of_file(&path) {
            if matches(len, sum) {
                return Ok(path);
            }
        }
        if self.objects.size(&rel)?.is_none() {
            return Err(corrupt(format!("shared file {rel} is missing")));
        }
        let bytes = self.objects.get(&rel)?;
        let (len, sum) = (bytes.len() as u64, checksum::of_bytes(&bytes));
        if !matches(len, sum) {
            return Err(mismatch(len, Some(sum)));
        }
        let io = |e: std::io::Error| StateError::Storage(format!("fetching {rel} to {}: {e}", path.display()));
        fs::create_dir_all(&self.fetch_dir).map_err(io)?;
        let tmp = path.with_extension(format!("part-{}", std::process::id()));
        fs::write(&tmp, bytes).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// Checks `entries` (see [`Self::verified_shared`]) on as many threads as there are
    /// cores, since reading and summing them is most of a restore; returns where each is
    /// read, by name, or the error of the first bad one in `entries`' order.
    fn verify_shared<'a>(&self, entries: &'a [SharedFile]) -> Result<HashMap<String, (PathBuf, &'a SharedFile)>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, entries.len().max(1));
        let next = AtomicUsize::new(0);
        let mut results: Vec<(usize, Result<PathBuf>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(entry) = entries.get(i) else { break };
                            done.push((i, self.verified_shared(entry)));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .map_err(|_| StateError::Storage("a thread verifying shared files panicked".into()))
                })
                .collect::<Result<Vec<_>>>()
        })?
        .into_iter()
        .flatten()
        .collect();
        results.sort_by_key(|(i, _)| *i);
        let mut paths = HashMap::with_capacity(entries.len());
        for (i, result) in results {
            paths.insert(entries[i].name.clone(), (result?, &entries[i]));
        }
        Ok(paths)
    }

    /// Reads checkpoint `id` and checks every file it references, shared files included,
    /// against the sizes and checksums in its manifest.
    pub fn load(&self, id: u64) -> Result<RestoredCheckpoint> {
        let dir = chk(id);
        let manifest = self.read_manifest(id)?;
        floe_failpoints::failpoint!("restore.load");
        let mut snapshots = HashMap::new();
        let mut shared: HashMap<String, SharedFile> = HashMap::new();
        for f in &manifest.files {
            let rel = format!("{dir}/{}", f.file);
            let bytes = self.objects.get(&rel)?;
            let sum = if manifest.version >= 2 {
                checksum::of_bytes(&bytes)
            } else {
                checksum::fnv(&bytes)
            };
            if bytes.len() as u64 != f.bytes {
                return Err(corrupt(format!(
                    "state file {rel} is corrupt: {} bytes, the manifest says {}",
                    bytes.len(),
                    f.bytes
                )));
            }
            if sum != f.checksum {
                return Err(corrupt(format!(
                    "state file {rel} is corrupt: checksum {sum:016x}, the manifest says {:016x}",
                    f.checksum
                )));
            }
            let mut snapshot = decode::<StateSnapshot>(&bytes)
                .map_err(|e| corrupt(format!("state file {rel} cannot be decoded: {e}")))?;
            for sst in snapshot.native.iter_mut().flat_map(|n| n.sst.iter_mut()) {
                let entry = f.shared.iter().find(|s| s.name == sst.shared_name).ok_or_else(|| {
                    corrupt(format!(
                        "state file {rel} references shared file {} that the manifest does not list",
                        sst.shared_name
                    ))
                })?;
                if entry.bytes != sst.bytes {
                    return Err(corrupt(format!(
                        "state file {rel} gives shared file {} {} bytes, the manifest {}",
                        sst.shared_name, sst.bytes, entry.bytes
                    )));
                }
                shared.insert(entry.name.clone(), entry.clone());
            }
            snapshots.insert((f.node, f.subtask), snapshot);
        }
        let mut shared: Vec<SharedFile> = shared.into_values().collect();
        shared.sort_by(|a, b| a.name.cmp(&b.name));
        let paths = self.verify_shared(&shared)?;
        for sst in snapshots
            .values_mut()
            .flat_map(|s| s.native.iter_mut())
            .flat_map(|n| n.sst.iter_mut())
        {
            if let Some((path, entry)) = paths.get(&sst.shared_name) {
                sst.path.clone_from(path);
                sst.checksum = entry.checksum;
            }
        }
        Ok(RestoredCheckpoint {
            location: self.location().to_string(),
            manifest,
            snapshots,
            incomplete: Vec::new(),
            skipped: Vec::new(),
        })
    }

    /// The checkpoint id recorded as completed last, if any checkpoint ever completed here;
    /// a record that cannot be read counts as evidence that one did.
    fn completed_record(&self) -> Result<Option<std::result::Result<u64, String>>> {
        if self.objects.size(COMPLETED)?.is_none() {
            return Ok(None);
        }
        let parsed = self
            .objects
            .get(COMPLETED)
            .and_then(|b| serde_json::from_slice::<Completed>(&b).map_err(|e| StateError::Storage(e.to_string())));
        Ok(Some(parsed.map(|c| c.checkpoint_id).map_err(|e| e.to_string())))
    }

    /// The newest complete, intact checkpoint; newer ones that are partial (never completed)
    /// or corrupt are skipped and reported in [`RestoredCheckpoint::incomplete`] and
    /// [`RestoredCheckpoint::skipped`].
    ///
    /// `Ok(None)` means that no checkpoint ever completed here (only partial ones, or none at
    /// all): a job starts afresh. If checkpoints did complete but none left can be restored
    /// (every one corrupt, or gone), the error is [`StateError::Unrestorable`], naming the
    /// directory and what is wrong with each.
    pub fn latest(&self) -> Result<Option<RestoredCheckpoint>> {
        let mut incomplete = Vec::new();
        let mut skipped = Vec::new();
        let ids = self.ids()?;
        let record = self.completed_record()?;
        let last_completed = record.as_ref().and_then(|r| r.as_ref().ok()).copied();
        if let Some(last) = last_completed.filter(|l| ids.binary_search(l).is_err()) {
            skipped.push((last, "it completed, but its directory is gone".to_string()));
        }
        for id in ids.into_iter().rev() {
            if !self.has_manifest(id)? {
                if last_completed == Some(id) {
                    skipped.push((id, "it completed, but its manifest is gone".into()));
                } else {
                    incomplete.push(id);
                }
                continue;
            }
            match self.load(id) {
                Ok(mut r) => {
                    r.incomplete = incomplete;
                    r.skipped = skipped;
                    return Ok(Some(r));
                }
                Err(e) => skipped.push((id, what_is_wrong(e))),
            }
        }
        if skipped.is_empty() && record.is_none() {
            return Ok(None);
        }
        let mut problems: Vec<String> = skipped
            .iter()
            .map(|(id, why)| format!("checkpoint {id}: {why}"))
            .collect();
        if let Some(Err(e)) = &record {
            problems.push(format!(
                "{COMPLETED} records that checkpoints completed here, and is itself unreadable ({e})"
            ));
        }
        if !incomplete.is_empty() {
            incomplete.reverse();
            problems.push(format!("checkpoints {incomplete:?} never completed"));
        }
        Err(StateError::Unrestorable {
            location: self.location().to_string(),
            problems,
        })
    }

    /// The newest complete checkpoint, which must be intact: what a savepoint directory is
    /// restored from (an older one would silently lose what the newest holds). `Ok(None)` if
    /// the directory holds no complete checkpoint.
    pub fn newest_complete(&self) -> Result<Option<RestoredCheckpoint>> {
        for id in self.ids()?.into_iter().rev() {
            if self.has_manifest(id)? {
                return match self.load(id) {
                    Ok(r) => Ok(Some(r)),
                    Err(e) => Err(StateError::Unrestorable {
                        location: self.location().to_string(),
                        problems: vec![format!("checkpoint {id}: {}", what_is_wrong(e))],
                    }),
                };
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
