//! Exactly-once part files (JSON lines or Parquet): Flink's two-phase-commit file sink.
//!
//! Each subtask writes into a hidden in-progress file; at a checkpoint barrier the file is
//! flushed, synced and closed (pre-commit) and remembered in the checkpoint; when the
//! checkpoint completes it is renamed to a visible part file (commit). After a crash the job
//! restores its newest complete checkpoint: the files it remembers are committed (if the
//! crash came before their rename), files committed by failed attempts for checkpoints
//! newer than the restored one are rolled back (the job falls back past a corrupt
//! checkpoint, and replays what they held), and in-progress files of failed attempts are
//! deleted once the restored job completes its first checkpoint. Readers see only committed
//! part files, each record exactly once.
//!
//! ```text
//! <dir>/part-<checkpoint>-<subtask>-<attempt>-<n>.<ext>   committed (ext: jsonl, parquet)
//! <dir>/.part-<subtask>-<attempt>-<n>.inprogress          being written or awaiting its checkpoint
//! ```

use std::fs::{self, File};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use floe_checkpoints::{decode, encode, StateSnapshot};
use floe_runtime::metrics::SinkLatency;
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Result, RuntimeError,
};
use tracing::warn;

use super::format::{JsonLines, PartFormat, PartWriter};

const IN_PROGRESS: &str = ".inprogress";

fn committed_name(in_progress: &Path, checkpoint: u64, extension: &str) -> Option<PathBuf> {
    let name = in_progress.file_name()?.to_str()?;
    let rest = name.strip_prefix(".part-")?.strip_suffix(IN_PROGRESS)?;
    Some(in_progress.with_file_name(format!("part-{checkpoint:010}-{rest}.{extension}")))
}

/// The checkpoint and attempt of a committed part file's name.
fn committed_parts(name: &str) -> Option<(u64, &str)> {
    let (rest, _extension) = name.strip_prefix("part-")?.rsplit_once('.')?;
    let mut fields = rest.split('-');
    let checkpoint = fields.next()?.parse().ok()?;
    let _subtask = fields.next()?;
    Some((checkpoint, fields.next()?))
}

/// Writes records into part files (in format `F`) committed only with the checkpoint that
/// covers them.
///
/// ```
/// use floe_operators::sink::exactly_once::{ExactlyOnceFileSink, ExactlyOnceJsonLinesSink};
/// use floe_operators::sink::parquet::Parquet;
/// let json = ExactlyOnceJsonLinesSink::<u32>::new("out/".into());
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Row { key: u64, count: u64 }
/// let parquet = ExactlyOnceFileSink::with_format("out/".into(), Parquet::<Row>::for_type().unwrap());
/// # let _ = (json, parquet);
/// ```
pub struct ExactlyOnceFileSink<T, F: PartFormat<T>> {
    dir: PathBuf,
    format: F,
    subtask: usize,
    attempt: String,
    checkpointing: bool,
    writer: Option<(PathBuf, F::Writer)>,
    /// Pre-committed files awaiting their checkpoint: (checkpoint id, path).
    pending: Vec<(u64, PathBuf)>,
    seq: u64,
    cleaned: bool,
    latency: Option<SinkLatency>,
    _t: PhantomData<fn(T)>,
}

/// The exactly-once file sink writing JSON lines.
pub type ExactlyOnceJsonLinesSink<T> = ExactlyOnceFileSink<T, JsonLines>;

impl<T> ExactlyOnceFileSink<T, JsonLines>
where
    JsonLines: PartFormat<T>,
{
    /// A sink writing JSON-lines part files into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self::with_format(dir, JsonLines)
    }
}

impl<T, F: PartFormat<T>> ExactlyOnceFileSink<T, F> {
    /// A sink writing part files in `format` into `dir`.
    pub fn with_format(dir: PathBuf, format: F) -> Self {
        ExactlyOnceFileSink {
            dir,
            format,
            subtask: 0,
            attempt: String::new(),
            checkpointing: false,
            writer: None,
            pending: Vec::new(),
            seq: 0,
            cleaned: false,
            latency: None,
            _t: PhantomData,
        }
    }

    fn error(&self, what: &str, path: &Path, e: std::io::Error) -> RuntimeError {
        RuntimeError::external(format!("{what} {}", path.display()), e)
    }

    /// Flushes, syncs and closes the current file; returns its path.
    fn pre_commit(&mut self) -> Result<Option<PathBuf>> {
        let Some((path, w)) = self.writer.take() else {
            return Ok(None);
        };
        let file = w.finish()?;
        file.sync_all().map_err(|e| self.error("syncing", &path, e))?;
        Ok(Some(path))
    }

    fn commit(&self, checkpoint: u64, path: &Path) -> Result<()> {
        let Some(target) = committed_name(path, checkpoint, self.format.extension()) else {
            return Err(RuntimeError::Internal(format!(
                "not an in-progress file: {}",
                path.display()
            )));
        };
        floe_failpoints::failpoint!("file.before-commit");
        match fs::rename(path, &target) {
            Ok(()) => {
                floe_failpoints::failpoint!("file.after-commit");
                Ok(())
            }
            // Committed before a crash: the checkpoint's record of it is all that is left.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.exists() => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RuntimeError::external(
                format!(
                    "committing {} (output of completed checkpoint {checkpoint}): it is gone and was never \
                     committed, so its records are lost (was the output directory changed or cleaned?)",
                    path.display()
                ),
                e,
            )),
            Err(e) => Err(self.error("committing", path, e)),
        }
    }

    /// Deletes part files that earlier attempts committed for checkpoints after `restored`:
    /// the restored job replays what they hold.
    fn roll_back_after(&self, restored: u64) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| self.error("listing", &self.dir, e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((checkpoint, attempt)) = committed_parts(&name) {
                if checkpoint > restored && attempt != self.attempt {
                    warn!(file = %name, restored, "rolling back output committed after the restored checkpoint");
                    match fs::remove_file(e.path()) {
                        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                            return Err(self.error("deleting", &e.path(), err));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes in-progress files that earlier attempts left and no checkpoint will commit.
    fn clean_up_aborted(&mut self) {
        self.cleaned = true;
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let mine = format!("-{}-", self.attempt);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".part-") && name.ends_with(IN_PROGRESS) && !name.contains(&mine) {
                if let Err(err) = fs::remove_file(e.path()) {
                    warn!(file = %e.path().display(), %err, "could not delete an aborted in-progress file");
                }
            }
        }
    }
}

impl<T: Data, F: PartFormat<T>> Operator for ExactlyOnceFileSink<T, F> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        self.subtask = ctx.info().subtask_index;
        self.attempt = format!("{:x}", ctx.info().attempt);
        self.checkpointing = ctx.info().checkpointing;
        self.latency = Some(SinkLatency::new(ctx.info()));
        fs::create_dir_all(&self.dir).map_err(|e| self.error("creating", &self.dir, e))?;
        if let Some(restored) = ctx.info().restored_checkpoint {
            self.roll_back_after(restored)?;
        }
        if let Some(s) = ctx.restored_state() {
            // Pre-committed in the checkpoint we restore, which completed: commit them now.
            for item in &s.operator {
                let (checkpoint, name): (u64, String) = decode(item)?;
                self.commit(checkpoint, &self.dir.join(name))?;
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: Batch, ctx: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let records = downcast_batch::<T>(batch)?;
        if let Some(l) = &mut self.latency {
            l.record_batch(records.iter().map(|r| r.timestamp), ctx.processing_time());
        }
        if self.writer.is_none() {
            self.seq += 1;
            let path = self.dir.join(format!(
                ".part-{}-{}-{}{IN_PROGRESS}",
                self.subtask, self.attempt, self.seq
            ));
            let file = File::create(&path).map_err(|e| self.error("creating", &path, e))?;
            let writer = self.format.create(file)?;
            self.writer = Some((path, writer));
        }
        match self.writer.as_mut() {
            Some((_, w)) => w.write(&records),
            None => Ok(()),
        }
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier, _: &mut OperatorContext) -> Result<StateSnapshot> {
        if let Some(path) = self.pre_commit()? {
            self.pending.push((barrier.id, path));
        }
        // File names only: the directory is the sink's, wherever the job runs.
        let operator = self
            .pending
            .iter()
            .map(|(c, p)| {
                encode(&(
                    *c,
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ))
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(StateSnapshot {
            operator,
            ..StateSnapshot::default()
        })
    }

    fn notify_checkpoint_complete(&mut self, id: u64, _: &mut OperatorContext) -> Result<()> {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= id);
        self.pending = waiting;
        for (checkpoint, path) in &done {
            self.commit(*checkpoint, path)?;
        }
        if !self.cleaned && self.subtask == 0 {
            // Every subtask has restored (and committed what it was dealt) before any
            // checkpoint of this attempt can complete.
            self.clean_up_aborted();
        }
        Ok(())
    }

    fn finish(&mut self, _: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        if !self.checkpointing {
            // Without checkpoints there is nothing to wait for: commit at the end of input.
            if let Some(path) = self.pre_commit()? {
                self.commit(0, &path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::{Record, TaskInfo};

    fn committed(dir: &Path) -> Vec<u32> {
        let mut v: Vec<u32> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .flat_map(|e| {
                fs::read_to_string(e.path())
                    .unwrap()
                    .lines()
                    .map(|l| l.parse().unwrap())
                    .collect::<Vec<u32>>()
            })
            .collect();
        v.sort();
        v
    }

    fn info() -> TaskInfo {
        static ATTEMPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut i = TaskInfo::new("t", "sink", 0, 1, 128);
        i.checkpointing = true;
        i.attempt = ATTEMPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        i
    }

    #[test]
    fn commits_only_what_completed_checkpoints_cover() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = OperatorHarness::new(
            Box::new(ExactlyOnceJsonLinesSink::<u32>::new(dir.path().into())),
            info(),
            0,
        )
        .unwrap();
        h.process(vec![Record::untimed(1u32), Record::untimed(2)]).unwrap();
        let snap1 = h.snapshot(1).unwrap();
        h.process(vec![Record::untimed(3u32)]).unwrap();
        let _snap2 = h.snapshot(2).unwrap();
        h.process(vec![Record::untimed(4u32)]).unwrap();
        assert!(
            committed(dir.path()).is_empty(),
            "nothing visible before a checkpoint completes"
        );
        h.notify_checkpoint_complete(1).unwrap();
        assert_eq!(committed(dir.path()), vec![1, 2]);

        // Crash now: checkpoint 2 never completed. Restore from checkpoint 1 and replay 3, 4.
        drop(h);
        let mut h = OperatorHarness::restored(
            Box::new(ExactlyOnceJsonLinesSink::<u32>::new(dir.path().into())),
            info(),
            0,
            Some(snap1),
        )
        .unwrap();
        h.process(vec![Record::untimed(3u32), Record::untimed(4)]).unwrap();
        h.snapshot(2).unwrap();
        h.notify_checkpoint_complete(2).unwrap();
        assert_eq!(committed(dir.path()), vec![1, 2, 3, 4], "each record exactly once");
    }

    #[test]
    fn restore_commits_files_a_crash_left_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = OperatorHarness::new(
            Box::new(ExactlyOnceJsonLinesSink::<u32>::new(dir.path().into())),
            info(),
            0,
        )
        .unwrap();
        h.process(vec![Record::untimed(7u32)]).unwrap();
        let snap = h.snapshot(1).unwrap();
        // Checkpoint 1 completed, but the process died before the notification.
        drop(h);
        let h = OperatorHarness::restored(
            Box::new(ExactlyOnceJsonLinesSink::<u32>::new(dir.path().into())),
            info(),
            0,
            Some(snap.clone()),
        )
        .unwrap();
        assert_eq!(committed(dir.path()), vec![7]);
        drop(h);
        // Restoring the same checkpoint again is harmless.
        OperatorHarness::restored(
            Box::new(ExactlyOnceJsonLinesSink::<u32>::new(dir.path().into())),
            info(),
            0,
            Some(snap),
        )
        .unwrap();
        assert_eq!(committed(dir.path()), vec![7]);
    }
}
