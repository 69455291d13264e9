//! Stream elements: records, batches and the messages channels carry.

use std::any::Any;
use std::fmt;

/// Event time in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The timestamp of a record that has none (no timestamp assigner ran).
pub const NO_TIMESTAMP: Timestamp = i64::MIN;
/// The watermark before any event.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
/// The watermark that ends event time: every timer and window fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// One record: a value and its event timestamp.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record<T> {
    /// The value.
    pub value: T,
    /// The event timestamp, or [`NO_TIMESTAMP`].
    pub timestamp: Timestamp,
}

impl<T> Record<T> {
    /// A record with a timestamp.
    pub fn new(value: T, timestamp: Timestamp) -> Self {
        Record { value, timestamp }
    }

    /// A record without a timestamp.
    pub fn untimed(value: T) -> Self {
        Record {
            value,
            timestamp: NO_TIMESTAMP,
        }
    }
}

/// A batch of records behind a type-erased box: `Vec<Record<T>>` for the `T` of its stream.
///
/// Operators downcast a batch once per batch (never per record) with [`downcast_batch`].
pub type Batch = Box<dyn BatchData>;

/// What the runtime needs of a batch without knowing its record type.
pub trait BatchData: Any + Send {
    /// Number of records.
    fn len(&self) -> usize;
    /// Whether the batch holds no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A deep copy (for fan-out to several consumers).
    fn clone_batch(&self) -> Batch;
    /// Upcast for downcasting.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// Name of the record type, for error messages.
    fn type_name(&self) -> &'static str;
}

impl<T: Clone + Send + 'static> BatchData for Vec<Record<T>> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn clone_batch(&self) -> Batch {
        Box::new(self.clone())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// Recovers the typed records of a batch.
///
/// The DSL guarantees types line up, so a mismatch is a runtime bug and is reported as
/// [`RuntimeError::Internal`](crate::RuntimeError::Internal).
pub fn downcast_batch<T: Clone + Send + 'static>(batch: Batch) -> crate::Result<Vec<Record<T>>> {
    let found = batch.type_name();
    batch.into_any().downcast::<Vec<Record<T>>>().map(|b| *b).map_err(|_| {
        crate::RuntimeError::Internal(format!(
            "batch of `{found}` where `{}` was expected",
            std::any::type_name::<T>()
        ))
    })
}

/// A checkpoint barrier: everything before it belongs to checkpoint `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointBarrier {
    /// Checkpoint id, increasing.
    pub id: u64,
    /// When the checkpoint was triggered (processing time, ms).
    pub timestamp: Timestamp,
    /// Whether the user asked for it (a savepoint).
    pub is_savepoint: bool,
}

/// What a channel carries: data and in-band control elements, in order.
pub enum Message {
    /// A batch of records.
    Data(Batch),
    /// Event time has reached the timestamp on this channel.
    Watermark(Timestamp),
    /// The channel has no data for a while: leave it out of the minimum watermark until it
    /// sends data or a watermark again.
    Idle,
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
    /// No more records will come on this channel (a final checkpoint barrier may follow).
    EndOfData,
    /// The channel ends: no more elements.
    EndOfStream,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Data(b) => write!(f, "Data({} records)", b.len()),
            Message::Watermark(w) => write!(f, "Watermark({w})"),
            Message::Idle => write!(f, "Idle"),
            Message::Barrier(b) => write!(f, "Barrier({})", b.id),
            Message::EndOfData => write!(f, "EndOfData"),
            Message::EndOfStream => write!(f, "EndOfStream"),
        }
    }
}

/// What a stream's records must be: cloneable (for fan-out), sendable between tasks, and
/// serializable, to travel between task managers (like Flink, where every type has a
/// serializer). `#[derive(Clone, Serialize, Deserialize)]` makes a type `Data`.
pub trait Data: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static {}
impl<T: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static> Data for T {}
