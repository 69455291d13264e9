//! Parquet part files, with the Arrow schema derived from the record type.
//!
//! Records go through `serde_arrow` into Arrow column builders and are written as Parquet
//! row groups by the `parquet` crate's Arrow writer; the file's footer is written when the
//! checkpoint barrier closes it, so a committed part file is always a complete Parquet file.

use std::fs::File;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_schema::{FieldRef, Schema, SchemaRef};
use floe_runtime::{Record, Result, RuntimeError};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_arrow::schema::{SchemaLike, TracingOptions};
use serde_arrow::ArrayBuilder;

/// Rows gathered in Arrow builders before they are handed to the Parquet writer.
const ARROW_BATCH_ROWS: usize = 8192;

/// Parquet part files for records of type `T`, a struct whose fields become the columns.
///
/// ```
/// use floe_operators::sink::parquet::Parquet;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Alert { user: u64, total: f64, reason: String, note: Option<String> }
/// let format = Parquet::<Alert>::for_type().unwrap();
/// assert_eq!(format.schema().fields().len(), 4);
/// // A record type that is not a struct has no columns to map to:
/// assert!(Parquet::<u64>::for_type().is_err());
/// ```
pub struct Parquet<T> {
    fields: Vec<FieldRef>,
    schema: SchemaRef,
    compression: Compression,
    row_group_rows: usize,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for Parquet<T> {
    fn clone(&self) -> Self {
        Parquet {
            fields: self.fields.clone(),
            schema: self.schema.clone(),
            compression: self.compression,
            row_group_rows: self.row_group_rows,
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Parquet<T> {
    /// The format for `T`, its schema traced from `T`'s serde description: numbers, strings,
    /// booleans, options (nullable columns), nested structs, sequences and maps; unit enum
    /// variants become strings. Snappy-compressed row groups of up to 1M rows.
    ///
    /// Fails, saying why, when `T` has no columnar form (it is not a struct, or a field's
    /// type cannot be traced).
    pub fn for_type() -> std::result::Result<Self, String> {
        let options = TracingOptions::default().enums_without_data_as_strings(true);
        let fields = Vec::<FieldRef>::from_type::<T>(options).map_err(|e| {
            format!(
                "records of type `{}` cannot be written as Parquet (the record type must be a struct \
                 with named fields whose types serde can describe): {e}",
                std::any::type_name::<T>()
            )
        })?;
        let schema = Arc::new(Schema::new(fields.clone()));
        Ok(Parquet {
            fields,
            schema,
            compression: Compression::SNAPPY,
            row_group_rows: 1 << 20,
            _t: PhantomData,
        })
    }
}

impl<T> Parquet<T> {
    /// The Arrow schema of the files.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Uses `compression` for column chunks (default Snappy).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Closes a row group after this many rows (default 1,048,576). Smaller row groups need
    /// less memory while a file is written and read.
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }
}

fn error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> RuntimeError {
    RuntimeError::external(format!("{what} a Parquet part file"), e)
}

/// The writer of one [`Parquet`] part file.
pub struct ParquetWriter<T> {
    builder: ArrayBuilder,
    rows: usize,
    writer: ArrowWriter<File>,
    _t: PhantomData<fn(T)>,
}

impl<T> ParquetWriter<T> {
    fn flush_rows(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        self.rows = 0;
        let batch = self
            .builder
            .to_record_batch()
            .map_err(|e| error("building columns of", e))?;
        self.writer.write(&batch).map_err(|e| error("writing", e))
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> super::format::PartFormat<T> for Parquet<T> {
    type Writer = ParquetWriter<T>;

    fn extension(&self) -> &'static str {
        "parquet"
    }

    fn create(&self, file: File) -> Result<ParquetWriter<T>> {
        let props = WriterProperties::builder()
            .set_compression(self.compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .build();
        Ok(ParquetWriter {
            builder: ArrayBuilder::from_arrow(&self.fields).map_err(|e| error("starting", e))?,
            rows: 0,
            writer: ArrowWriter::try_new(file, self.schema.clone(), Some(props)).map_err(|e| error("starting", e))?,
            _t: PhantomData,
        })
    }
}

impl<T: Serialize> super::format::PartWriter<T> for ParquetWriter<T> {
    fn write(&mut self, records: &[Record<T>]) -> Result<()> {
        for r in records {
            self.builder
                .push(&r.value)
                .map_err(|e| error("encoding a record for", e))?;
            self.rows += 1;
            if self.rows >= ARROW_BATCH_ROWS {
                self.flush_rows()?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<File> {
        self.flush_rows()?;
        self.writer.into_inner().map_err(|e| error("finishing", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::{PartFormat, PartWriter};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Status {
        Ok,
        Fail,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Payment {
        user: u64,
        amount: f64,
        status: Status,
        note: Option<String>,
        tags: Vec<String>,
    }

    fn payment(i: u64) -> Payment {
        Payment {
            user: i % 7,
            amount: i as f64 * 1.5,
            status: if i.is_multiple_of(3) { Status::Fail } else { Status::Ok },
            note: i.is_multiple_of(2).then(|| format!("n{i}")),
            tags: (0..i % 3).map(|t| format!("t{t}")).collect(),
        }
    }

    #[test]
    fn records_round_trip_through_a_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let format = Parquet::<Payment>::for_type().unwrap().with_row_group_rows(5000);
        let mut w = format.create(File::create(&path).unwrap()).unwrap();
        let all: Vec<Payment> = (0..20_000).map(payment).collect();
        for chunk in all.chunks(1000) {
            let records: Vec<Record<Payment>> = chunk.iter().cloned().map(Record::untimed).collect();
            w.write(&records).unwrap();
        }
        w.finish().unwrap().sync_all().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 4, "row groups of 5000 rows");
        let mut read = Vec::new();
        for batch in reader.build().unwrap() {
            let rows: Vec<Payment> = serde_arrow::from_record_batch(&batch.unwrap()).unwrap();
            read.extend(rows);
        }
        assert_eq!(read, all);
    }

    #[test]
    fn an_empty_file_is_still_a_valid_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let format = Parquet::<Payment>::for_type().unwrap();
        let w = format.create(File::create(&path).unwrap()).unwrap();
        w.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
        assert_eq!(reader.schema().fields().len(), 5);
    }

    #[test]
    fn non_struct_records_are_refused_with_a_reason() {
        for err in [
            Parquet::<u64>::for_type().err().unwrap(),
            Parquet::<String>::for_type().err().unwrap(),
        ] {
            assert!(err.contains("struct with named fields"), "{err}");
        }
    }
}
