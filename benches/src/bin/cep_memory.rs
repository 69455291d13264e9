//! What a key costs in the fraud rule's CEP operator: heap bytes per key with one and with
//! four partial matches (live heap bytes counted by this binary's allocator, over a million
//! keys run through the operator by hand on the heap backend, after the watermark passed
//! their events), and the bytes such keys take in keyed state (serialized, as in RocksDB
//! and in checkpoints). A key without partial matches costs nothing: its state is cleared.
//!
//! ```text
//! cargo run --release -p floe-benches --bin cep-memory -- --keys 1000000
//! ```

use std::alloc::System;
use std::sync::Arc;

use clap::Parser;
use floe_dsl::cep::{Match, Nfa};
use floe_jobs::fraud;
use floe_jobs::payments::{Payment, Status};
use floe_operators::cep::operator::{CepFunction, CepMetrics};
use floe_operators::keyed::KeyedProcessOperator;
use floe_operators::Collector;
use floe_runtime::harness::OperatorHarness;
use floe_runtime::{Record, TaskInfo, UserError};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[derive(Parser, Debug)]
#[command(about = "Memory per key and per partial match of the fraud rule's CEP state")]
struct Args {
    /// Keys per measurement
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
}

/// The system allocator, counting what is allocated and freed.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not freed.
fn live() -> i64 {
    let s = ALLOCATOR.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Heap bytes per key and serialized state bytes per key, for keys with `fails` failed
/// payments each (so `fails` partial matches each), on the heap backend.
fn memory(keys: u64, fails: u64) -> anyhow::Result<(f64, f64)> {
    let nfa = Arc::new(Nfa::compile(fraud::pattern())?);
    let select = |m: Match<Payment>, out: &mut Collector<u64>| -> Result<(), UserError> {
        out.collect(m.len() as u64);
        Ok(())
    };
    let metrics = CepMetrics::default();
    let function = CepFunction::new(nfa, select).with_metrics(metrics.clone());
    let op = KeyedProcessOperator::new(Arc::new(|p: &Payment| p.user_id), function);
    let info = TaskInfo::new("memory", "cep", 0, 1, 128);
    let mut h = OperatorHarness::new(Box::new(op), info, 0)?;
    let before = live();
    let mut batch = Vec::with_capacity(1024);
    for k in 0..keys {
        for f in 0..fails {
            let ts = 1_000_000 + (k % 10_000) as i64 + f as i64;
            let p = Payment {
                event_id: k * fails + f,
                user_id: k as u32,
                status: Status::Fail,
                amount: 10.0,
                ts,
            };
            batch.push(Record::new(p, ts));
            if batch.len() == 1024 {
                h.process(std::mem::take(&mut batch))?;
            }
        }
    }
    h.process(batch)?;
    h.watermark(1_000_000 + 20_000)?;
    anyhow::ensure!(
        metrics.partial_matches.get() == (keys * fails) as i64,
        "expected {} partial matches, found {}",
        keys * fails,
        metrics.partial_matches.get()
    );
    let heap = (live() - before) as f64 / keys as f64;
    let state = h.snapshot(1)?.size() as f64 / keys as f64;
    Ok((heap, state))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for fails in [1, 4] {
        let (heap, state) = memory(args.keys, fails)?;
        println!(
            "{} keys with {fails} partial match(es) each: {heap:.0} heap bytes per key, {state:.0} state bytes per key (serialized)",
            args.keys
        );
    }
    Ok(())
}
