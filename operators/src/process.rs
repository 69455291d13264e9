//! Process functions on non-keyed streams: the lowest-level one-input transformation, with
//! access to the record's timestamp, the watermark, and side outputs.

use std::marker::PhantomData;

use floe_runtime::{
    downcast_batch, Batch, Data, Operator, OperatorContext, Output, Result, RuntimeError, TaskInfo, Timestamp,
    UserError, NO_TIMESTAMP,
};

use crate::collector::Collector;

/// What a [`ProcessFunction`] can see while it processes one element.
pub struct ProcessContext<'a> {
    timestamp: Timestamp,
    ctx: &'a OperatorContext,
}

impl ProcessContext<'_> {
    /// The element's event timestamp, if it has one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// The current event-time watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.ctx.current_watermark()
    }

    /// The current processing time (ms).
    pub fn processing_time(&self) -> Timestamp {
        self.ctx.processing_time()
    }

    /// Which subtask runs this function.
    pub fn task_info(&self) -> &TaskInfo {
        self.ctx.info()
    }
}

/// A function called for every element, emitting any number of records on the main output
/// and on side outputs (Flink's `ProcessFunction`).
pub trait ProcessFunction<I, O>: Send + 'static {
    /// Processes one element.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<O>,
    ) -> Result<(), UserError>;
}

impl<I, O, F> ProcessFunction<I, O> for F
where
    F: FnMut(I, &mut ProcessContext<'_>, &mut Collector<O>) -> Result<(), UserError> + Send + 'static,
{
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut ProcessContext<'_>,
        out: &mut Collector<O>,
    ) -> Result<(), UserError> {
        self(value, ctx, out)
    }
}

/// Runs a [`ProcessFunction`].
pub struct ProcessOperator<I, O, P> {
    function: P,
    out: Collector<O>,
    _t: PhantomData<fn(I)>,
}

impl<I: Data, O: Data, P: ProcessFunction<I, O>> ProcessOperator<I, O, P> {
    /// Runs `function`.
    pub fn new(function: P) -> Self {
        ProcessOperator {
            function,
            out: Collector::default(),
            _t: PhantomData,
        }
    }
}

impl<I: Data, O: Data, P: ProcessFunction<I, O>> Operator for ProcessOperator<I, O, P> {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        for r in downcast_batch::<I>(batch)? {
            self.out.set_timestamp(r.timestamp);
            let mut pctx = ProcessContext {
                timestamp: r.timestamp,
                ctx,
            };
            self.function
                .process_element(r.value, &mut pctx, &mut self.out)
                .map_err(RuntimeError::User)?;
        }
        self.out.flush(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputTag;
    use floe_runtime::harness::OperatorHarness;
    use floe_runtime::Record;

    #[test]
    fn side_outputs_and_errors() {
        let odd: OutputTag<i64> = OutputTag::new("odd");
        let tag = odd.clone();
        let f = move |v: i64, ctx: &mut ProcessContext<'_>, out: &mut Collector<String>| -> Result<(), UserError> {
            if v < 0 {
                return Err(format!("negative value {v}").into());
            }
            if v % 2 == 1 {
                out.side(&tag, v);
            } else {
                out.collect(format!("{v}@{:?}", ctx.timestamp()));
            }
            Ok(())
        };
        let mut h =
            OperatorHarness::new(Box::new(ProcessOperator::new(f)), TaskInfo::new("t", "p", 0, 1, 128), 0).unwrap();
        h.process(vec![Record::new(1i64, 10), Record::new(2, 20), Record::untimed(4)])
            .unwrap();
        assert_eq!(h.take_values::<String>().unwrap(), vec!["2@Some(20)", "4@None"]);
        assert_eq!(h.take_side::<i64>(odd.id()).unwrap(), vec![Record::new(1, 10)]);
        let err = h.process(vec![Record::new(-1i64, 0)]).unwrap_err();
        assert!(err.to_string().contains("negative value -1"), "{err}");
    }
}
