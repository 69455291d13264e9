use super::*;
use crate::OutputTag;
use floe_runtime::harness::OperatorHarness;
use floe_runtime::Record;

/// Counts events per key; on every event registers an event-time timer at ts + 10 and a
/// processing-time timer at now + 100, and reports timers as "key@ts:domain:count".
#[derive(Clone)]
struct CountWithTimers {
    count: ValueStateDescriptor<u64>,
    fired: OutputTag<String>,
}

impl KeyedProcessFunction<String, (String, i64), u64> for CountWithTimers {
    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<u64>,
    ) -> Result<(), UserError> {
        let n = ctx.state().update(
            &self.count,
            || 0,
            |c| {
                *c += 1;
                *c
            },
        )?;
        ctx.register_event_time_timer(v.1 + 10);
        let now = ctx.processing_time();
        ctx.register_processing_time_timer(now + 100);
        out.collect(n);
        Ok(())
    }

    fn on_timer(
        &mut self,
        ts: Timestamp,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<u64>,
    ) -> Result<(), UserError> {
        let n = ctx.state().get(&self.count)?.unwrap_or(0);
        let domain = match ctx.time_domain() {
            Some(TimeDomain::EventTime) => "event",
            Some(TimeDomain::ProcessingTime) => "proc",
            None => "none",
        };
        out.side(&self.fired, format!("{}@{ts}:{domain}:{n}", ctx.key()));
        Ok(())
    }
}

fn harness(f: CountWithTimers) -> OperatorHarness {
    let op = KeyedProcessOperator::new(Arc::new(|v: &(String, i64)| v.0.clone()), f);
    OperatorHarness::new(Box::new(op), TaskInfo::new("t", "keyed", 0, 1, 128), 1_000).unwrap()
}

fn rec(k: &str, ts: i64) -> Record<(String, i64)> {
    Record::new((k.to_string(), ts), ts)
}

#[test]
fn event_time_timers_fire_once_in_order_per_key() {
    let fired = OutputTag::new("fired");
    let mut h = harness(CountWithTimers {
        count: ValueStateDescriptor::new("count"),
        fired: fired.clone(),
    });
    h.process(vec![rec("b", 20), rec("a", 5), rec("a", 5), rec("b", 1)])
        .unwrap();
    assert_eq!(h.take_values::<u64>().unwrap(), vec![1, 1, 2, 2]);
    h.watermark(14).unwrap();
    let side: Vec<String> = h
        .take_side::<String>(fired.id())
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    // a@15 registered twice fires once; b@11 before a@15; b@30 not yet.
    assert_eq!(side, vec!["b@11:event:2"]);
    h.watermark(15).unwrap();
    h.watermark(15).unwrap();
    let side: Vec<Record<String>> = h.take_side::<String>(fired.id()).unwrap();
    assert_eq!(side, vec![Record::new("a@15:event:2".to_string(), 15)]);
    h.watermark(100).unwrap();
    let side: Vec<String> = h
        .take_side::<String>(fired.id())
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(side, vec!["b@30:event:2"]);
    assert_eq!(
        h.take_watermarks(),
        vec![14, 15, 15, 100],
        "watermarks forwarded after timers"
    );
}

#[test]
fn processing_time_timers_follow_the_clock() {
    let fired = OutputTag::new("fired");
    let mut h = harness(CountWithTimers {
        count: ValueStateDescriptor::new("count"),
        fired: fired.clone(),
    });
    h.process(vec![rec("x", 1)]).unwrap(); // proc timer at 1100
    h.set_processing_time(1_050).unwrap();
    h.process(vec![rec("y", 2)]).unwrap(); // proc timer at 1150
    h.set_processing_time(1_099).unwrap();
    assert!(h.take_side::<String>(fired.id()).unwrap().is_empty());
    h.set_processing_time(1_200).unwrap();
    let side: Vec<String> = h
        .take_side::<String>(fired.id())
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(side, vec!["x@1100:proc:1", "y@1150:proc:1"]);
    h.set_processing_time(5_000).unwrap();
    assert!(
        h.take_side::<String>(fired.id()).unwrap().is_empty(),
        "each timer fires once"
    );
}

#[test]
fn rolling_reduce_per_key() {
    let op = KeyedProcessOperator::new(
        Arc::new(|v: &(String, i64)| v.0.clone()),
        RollingReduce::new(Arc::new(|a: &(String, i64), b: &(String, i64)| {
            (a.0.clone(), a.1 + b.1)
        })),
    );
    let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "reduce", 0, 1, 128), 0).unwrap();
    h.process(vec![rec("a", 1), rec("b", 10), rec("a", 2)]).unwrap();
    let sums: Vec<i64> = h
        .take_values::<(String, i64)>()
        .unwrap()
        .into_iter()
        .map(|v| v.1)
        .collect();
    assert_eq!(sums, vec![1, 10, 3]);
}

#[test]
fn state_ttl_expires_values() {
    #[derive(Clone)]
    struct LastSeen(ValueStateDescriptor<i64>);
    impl KeyedProcessFunction<String, (String, i64), Option<i64>> for LastSeen {
        fn process_element(
            &mut self,
            v: (String, i64),
            ctx: &mut KeyedContext<'_, String>,
            out: &mut Collector<Option<i64>>,
        ) -> Result<(), UserError> {
            out.collect(ctx.state().get(&self.0)?);
            ctx.state().set(&self.0, v.1)?;
            Ok(())
        }
    }
    let f = LastSeen(ValueStateDescriptor::new("last").with_ttl(std::time::Duration::from_millis(100)));
    let op = KeyedProcessOperator::new(Arc::new(|v: &(String, i64)| v.0.clone()), f);
    let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "ttl", 0, 1, 128), 0).unwrap();
    h.process(vec![rec("a", 1)]).unwrap();
    h.set_processing_time(99).unwrap();
    h.process(vec![rec("a", 2)]).unwrap();
    h.set_processing_time(250).unwrap();
    h.process(vec![rec("a", 3)]).unwrap();
    assert_eq!(h.take_values::<Option<i64>>().unwrap(), vec![None, Some(1), None]);
}

#[test]
fn list_map_reducing_and_aggregating_state_through_the_context() {
    #[derive(Clone)]
    struct All {
        seen: ListStateDescriptor<i64>,
        by_parity: MapStateDescriptor<bool, u32>,
        max: ReducingStateDescriptor<i64>,
        count: AggregatingStateDescriptor<i64, crate::aggregate::Count>,
    }
    impl KeyedProcessFunction<String, (String, i64), String> for All {
        fn process_element(
            &mut self,
            v: (String, i64),
            ctx: &mut KeyedContext<'_, String>,
            out: &mut Collector<String>,
        ) -> Result<(), UserError> {
            let s = ctx.state();
            s.list_add(&self.seen, v.1)?;
            let n = s.map_get(&self.by_parity, &(v.1 % 2 == 0))?.unwrap_or(0);
            s.map_put(&self.by_parity, v.1 % 2 == 0, n + 1)?;
            s.reduce_add(&self.max, v.1)?;
            s.aggregate_add(&self.count, &v.1)?;
            let mut parity = s.map_entries(&self.by_parity)?;
            parity.sort();
            out.collect(format!(
                "{} seen={:?} parity={parity:?} max={:?} count={:?}",
                v.0,
                s.list_get(&self.seen)?,
                s.reduce_get(&self.max)?,
                s.aggregate_get(&self.count)?
            ));
            Ok(())
        }
    }
    let f = All {
        seen: ListStateDescriptor::new("seen"),
        by_parity: MapStateDescriptor::new("parity"),
        max: ReducingStateDescriptor::new("max", |a: &i64, b: &i64| *a.max(b)),
        count: AggregatingStateDescriptor::new("count", crate::aggregate::Count),
    };
    let op = KeyedProcessOperator::new(Arc::new(|v: &(String, i64)| v.0.clone()), f);
    let mut h = OperatorHarness::new(Box::new(op), TaskInfo::new("t", "all", 0, 1, 128), 0).unwrap();
    h.process(vec![rec("a", 3), rec("b", 1), rec("a", 8)]).unwrap();
    assert_eq!(
        h.take_values::<String>().unwrap(),
        vec![
            "a seen=[3] parity=[(false, 1)] max=Some(3) count=Some(1)",
            "b seen=[1] parity=[(false, 1)] max=Some(1) count=Some(1)",
            "a seen=[3, 8] parity=[(false, 1), (true, 1)] max=Some(8) count=Some(2)",
        ]
    );
}
