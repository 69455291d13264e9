//! JSON-lines files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::PathBuf;

use floe_checkpoints::StateSnapshot;
use floe_runtime::metrics::SinkLatency;
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Result, RuntimeError,
};
use serde::Serialize;

/// Writes one JSON document per line. With parallelism above 1, subtask `i` writes to the
/// path with `-i` before the extension (`out.jsonl` → `out-0.jsonl`).
///
/// ```
/// use floe_operators::sink::json_lines::JsonLinesSink;
/// let sink = JsonLinesSink::<u32>::new("out.jsonl".into());
/// # let _ = sink;
/// ```
pub struct JsonLinesSink<T> {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    latency: Option<SinkLatency>,
    _t: PhantomData<fn(T)>,
}

impl<T> JsonLinesSink<T> {
    /// A sink writing to `path` (created or truncated when the job starts).
    pub fn new(path: PathBuf) -> Self {
        JsonLinesSink {
            path,
            writer: None,
            latency: None,
            _t: PhantomData,
        }
    }

    fn error(&self, e: impl std::error::Error + Send + Sync + 'static) -> RuntimeError {
        RuntimeError::external(format!("writing {}", self.path.display()), e)
    }

    fn flush(&mut self) -> Result<()> {
        match self.writer.as_mut().map(|w| w.flush()) {
            Some(Err(e)) => Err(self.error(e)),
            _ => Ok(()),
        }
    }
}

impl<T: Data + Serialize> Operator for JsonLinesSink<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        if ctx.info().parallelism > 1 {
            let stem = self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = match self.path.extension() {
                Some(ext) => format!("{stem}-{}.{}", ctx.info().subtask_index, ext.to_string_lossy()),
                None => format!("{stem}-{}", ctx.info().subtask_index),
            };
            self.path.set_file_name(name);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let file = File::create(&self.path).map_err(|e| self.error(e))?;
        self.writer = Some(BufWriter::with_capacity(256 * 1024, file));
        self.latency = Some(SinkLatency::new(ctx.info()));
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: Batch, ctx: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let records = downcast_batch::<T>(batch)?;
        if let Some(l) = &mut self.latency {
            l.record_batch(records.iter().map(|r| r.timestamp), ctx.processing_time());
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(RuntimeError::Internal("json-lines sink used before open".into()));
        };
        for r in &records {
            let written = serde_json::to_writer(&mut *w, &r.value)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = written {
                return Err(RuntimeError::external(format!("writing {}", self.path.display()), e));
            }
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _: &CheckpointBarrier, _: &mut OperatorContext) -> Result<StateSnapshot> {
        self.flush()?;
        Ok(StateSnapshot::default())
    }

    fn finish(&mut self, _: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::{Record, TaskInfo};

    #[test]
    fn writes_one_document_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.jsonl");
        let mut h = OperatorHarness::new(
            Box::new(JsonLinesSink::<(u32, String)>::new(path.clone())),
            TaskInfo::new("t", "sink", 0, 1, 128),
            0,
        )
        .unwrap();
        h.process(vec![
            Record::untimed((1u32, "a".to_string())),
            Record::untimed((2, "b\n".to_string())),
        ])
        .unwrap();
        h.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1,\"a\"]\n[2,\"b\\n\"]\n");

        let mut h = OperatorHarness::new(
            Box::new(JsonLinesSink::<u32>::new(path.clone())),
            TaskInfo::new("t", "sink", 1, 2, 128),
            0,
        )
        .unwrap();
        h.process(vec![Record::untimed(5u32)]).unwrap();
        h.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sub/out-1.jsonl")).unwrap(),
            "5\n"
        );
    }
}
