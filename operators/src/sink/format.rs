//! Part-file formats of the exactly-once file sink: how records become bytes in one file.
//!
//! A format creates a writer per part file; the sink feeds it batches and, at the
//! checkpoint barrier that closes the file, asks it to finish (write any footer) and hand the
//! file back for syncing. JSON lines ([`JsonLines`]) and Parquet
//! ([`Parquet`](super::parquet::Parquet)) are built in.

use std::fs::File;
use std::io::{BufWriter, Write};

use floe_runtime::{Record, Result, RuntimeError};
use serde::Serialize;

/// A file format for part files.
pub trait PartFormat<T>: Send + 'static {
    /// Writes one part file.
    type Writer: PartWriter<T>;

    /// The extension of committed part files, without the dot (`jsonl`, `parquet`).
    fn extension(&self) -> &'static str;

    /// Starts writing into a freshly created, empty `file`.
    fn create(&self, file: File) -> Result<Self::Writer>;
}

/// Writes records into one part file.
pub trait PartWriter<T>: Send {
    /// Appends records.
    fn write(&mut self, records: &[Record<T>]) -> Result<()>;

    /// Writes everything still buffered (and the format's footer) and returns the file,
    /// which the sink syncs before the checkpoint may complete.
    fn finish(self) -> Result<File>;
}

fn io_error(what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::external(format!("writing a {what} part file"), e)
}

/// One JSON document per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// The writer of a [`JsonLines`] part file.
pub struct JsonLinesWriter(BufWriter<File>);

impl<T: Serialize + Send + 'static> PartFormat<T> for JsonLines {
    type Writer = JsonLinesWriter;

    fn extension(&self) -> &'static str {
        "jsonl"
    }

    fn create(&self, file: File) -> Result<JsonLinesWriter> {
        Ok(JsonLinesWriter(BufWriter::with_capacity(256 * 1024, file)))
    }
}

impl<T: Serialize> PartWriter<T> for JsonLinesWriter {
    fn write(&mut self, records: &[Record<T>]) -> Result<()> {
        for r in records {
            serde_json::to_writer(&mut self.0, &r.value)
                .map_err(std::io::Error::from)
                .and_then(|()| self.0.write_all(b"\n"))
                .map_err(|e| io_error("JSON-lines", e))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<File> {
        self.0.into_inner().map_err(|e| io_error("JSON-lines", e.into_error()))
    }
}
