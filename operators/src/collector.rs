//! Typed collectors and side-output tags for user functions.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use floe_runtime::{Data, Output, Record, Result, Timestamp};

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// Names a side output of type `T` (Flink's `OutputTag`).
///
/// ```
/// use floe_operators::OutputTag;
/// let late: OutputTag<String> = OutputTag::new("late");
/// assert_eq!(late.name(), "late");
/// assert_ne!(late.id(), OutputTag::<String>::new("late").id());
/// ```
pub struct OutputTag<T> {
    id: u64,
    name: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// A new tag; every tag is distinct, even with the same name.
    pub fn new(name: &str) -> Self {
        OutputTag {
            id: NEXT_TAG.fetch_add(1, Ordering::Relaxed),
            name: name.to_string(),
            _t: PhantomData,
        }
    }

    /// The tag's unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag {
            id: self.id,
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OutputTag({}#{})", self.name, self.id)
    }
}

/// A buffer of side-output records of one tag.
trait SideBuffer: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn drain_into(&mut self, tag: u64, out: &mut dyn Output) -> Result<()>;
}

impl<S: Data> SideBuffer for Vec<Record<S>> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn drain_into(&mut self, tag: u64, out: &mut dyn Output) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        out.emit_side(tag, Box::new(std::mem::take(self)))
    }
}

/// Where a user function emits records: the main output and any side outputs. Records are
/// buffered and leave as one batch per operator call.
pub struct Collector<O> {
    main: Vec<Record<O>>,
    side: Vec<(u64, Box<dyn SideBuffer>)>,
    timestamp: Timestamp,
}

impl<O: Data> Default for Collector<O> {
    fn default() -> Self {
        Collector {
            main: Vec::new(),
            side: Vec::new(),
            timestamp: floe_runtime::NO_TIMESTAMP,
        }
    }
}

impl<O: Data> Collector<O> {
    /// Emits `value` with the timestamp of the element (or timer) being processed.
    pub fn collect(&mut self, value: O) {
        self.main.push(Record::new(value, self.timestamp));
    }

    /// Emits `value` with an explicit event timestamp.
    pub fn collect_at(&mut self, value: O, timestamp: Timestamp) {
        self.main.push(Record::new(value, timestamp));
    }

    /// Emits `value` on the side output `tag`.
    pub fn side<S: Data>(&mut self, tag: &OutputTag<S>, value: S) {
        let ts = self.timestamp;
        let buf = match self.side.iter().position(|(t, _)| *t == tag.id()) {
            Some(i) => &mut self.side[i].1,
            None => {
                self.side.push((tag.id(), Box::new(Vec::<Record<S>>::new())));
                &mut self.side.last_mut().expect("just pushed").1
            }
        };
        if let Some(v) = buf.as_any_mut().downcast_mut::<Vec<Record<S>>>() {
            v.push(Record::new(value, ts));
        }
    }

    /// The timestamp given to records collected now.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// Sets the timestamp given to records collected from now on.
    pub fn set_timestamp(&mut self, ts: Timestamp) {
        self.timestamp = ts;
    }

    /// Number of main-output records buffered.
    pub fn len(&self) -> usize {
        self.main.len()
    }

    /// Whether no main-output record is buffered.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    /// Sends what was collected to `out`: main output as one batch, each side output as one.
    pub fn flush(&mut self, out: &mut dyn Output) -> Result<()> {
        if !self.main.is_empty() {
            let cap = self.main.capacity();
            out.emit(Box::new(std::mem::replace(&mut self.main, Vec::with_capacity(cap))))?;
        }
        for (tag, buf) in &mut self.side {
            buf.drain_into(*tag, out)?;
        }
        Ok(())
    }
}
