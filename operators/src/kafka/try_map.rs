//! A user function that may reject a Kafka record: what it rejects becomes a
//! [`DeadLetter`] with the record's origin, and the job goes on.

use std::marker::PhantomData;
use std::sync::Arc;

use floe_runtime::metrics::Counter;
use floe_runtime::{downcast_batch, Batch, Data, Operator, OperatorContext, Output, Record, Result};
use serde::Serialize;
use tracing::warn;

use super::rate_limit::RateLimit;
use super::source::Envelope;
use super::DeadLetter;

/// Applies `f` to the value of each [`Envelope`] (what a source with
/// [`WithMetadata`](super::source::WithMetadata) reads): `Ok(out)` goes on,
/// `Err(reason)` makes a [`DeadLetter`] (error `rejected: <reason>`) with the record's topic,
/// partition, offset, timestamp and key, and the value as JSON (what the job saw, since
/// the bytes as read are no longer at hand). Dead letters go to side output `tag`, or are
/// counted and logged when there is none.
pub struct TryMapOperator<T, O, F> {
    f: Arc<F>,
    tag: Option<u64>,
    rejected: Counter,
    warn: RateLimit,
    _t: PhantomData<fn(T) -> O>,
}

impl<T, O, F> TryMapOperator<T, O, F> {
    /// Maps with `f`, dead letters on side output `tag`, counted in `rejected`.
    pub fn new(f: Arc<F>, tag: Option<u64>, rejected: Counter) -> Self {
        TryMapOperator {
            f,
            tag,
            rejected,
            warn: RateLimit::default(),
            _t: PhantomData,
        }
    }
}

/// The dead letter of `record`, rejected by a user function for `reason`.
pub fn rejected<T: Serialize>(record: &Envelope<T>, reason: &str) -> DeadLetter {
    DeadLetter {
        error: format!("rejected: {reason}"),
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.clone(),
        payload: serde_json::to_vec(&record.value).ok(),
    }
}

impl<T, O, F> Operator for TryMapOperator<T, O, F>
where
    T: Data + Serialize,
    O: Data,
    F: Fn(&T) -> std::result::Result<O, String> + Send + Sync + 'static,
{
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        _ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let records = downcast_batch::<Envelope<T>>(batch)?;
        let f = &*self.f;
        let mut mapped = Vec::with_capacity(records.len());
        let mut dead = Vec::new();
        for r in records {
            match f(&r.value.value) {
                Ok(v) => mapped.push(Record::new(v, r.timestamp)),
                Err(reason) => {
                    self.rejected.inc();
                    if self.tag.is_some() {
                        dead.push(Record::new(rejected(&r.value, &reason), r.timestamp));
                    } else if let Some(suppressed) = self.warn.check() {
                        warn!(
                            topic = %r.value.topic,
                            partition = r.value.partition,
                            offset = r.value.offset,
                            %reason,
                            suppressed,
                            total = self.rejected.get(),
                            "record rejected by try_map and skipped (call .dead_letters() to keep such records)"
                        );
                    }
                }
            }
        }
        if let (Some(tag), false) = (self.tag, dead.is_empty()) {
            out.emit_side(tag, Box::new(dead))?;
        }
        if mapped.is_empty() {
            return Ok(());
        }
        out.emit(Box::new(mapped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::TaskInfo;

    fn envelope(offset: i64, value: i64) -> Record<Envelope<i64>> {
        Record::new(
            Envelope {
                topic: "payments".into(),
                partition: 2,
                offset,
                timestamp: Some(100 + offset),
                key: Some(b"k".to_vec()),
                headers: Vec::new(),
                value,
            },
            100 + offset,
        )
    }

    fn positive(v: &i64) -> std::result::Result<i64, String> {
        if *v > 0 {
            Ok(v * 10)
        } else {
            Err(format!("{v} is not positive"))
        }
    }

    #[test]
    fn rejected_records_become_dead_letters_with_their_origin() {
        let counter = Counter::default();
        let op = TryMapOperator::new(Arc::new(positive), Some(7), counter.clone());
        let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "try_map", 0, 1, 128), 0).unwrap();
        h.process(vec![envelope(0, 1), envelope(1, -2), envelope(2, 3)])
            .unwrap();
        assert_eq!(h.take_values::<i64>().unwrap(), vec![10, 30]);
        let dead = h.take_side::<DeadLetter>(7).unwrap();
        assert_eq!(dead.len(), 1);
        let d = &dead[0].value;
        assert_eq!(
            (d.topic.as_str(), d.partition, d.offset, d.timestamp),
            ("payments", 2, 1, Some(101))
        );
        assert_eq!(d.error, "rejected: -2 is not positive");
        assert_eq!(
            (d.key.as_deref(), d.payload.as_deref()),
            (Some(&b"k"[..]), Some(&b"-2"[..]))
        );
        assert_eq!(dead[0].timestamp, 101);
        assert_eq!(counter.get(), 1);
    }

    #[test]
    fn without_a_side_output_rejections_are_counted() {
        let counter = Counter::default();
        let op = TryMapOperator::new(Arc::new(positive), None, counter.clone());
        let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "try_map", 0, 1, 128), 0).unwrap();
        h.process(vec![envelope(0, -1), envelope(1, 0)]).unwrap();
        assert!(h.take_values::<i64>().unwrap().is_empty());
        assert_eq!(counter.get(), 2);
    }
}
