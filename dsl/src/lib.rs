//! The typed DSL Floe jobs are written with.
//!
//! A job creates an [`Env`], reads sources into [`Stream`]s, transforms them (`map`, `filter`,
//! `key_by`, windows, process functions with keyed state and timers), adds sinks, and calls
//! [`Env::execute`]:
//!
//! ```
//! use floe_dsl::prelude::*;
//! use std::time::Duration;
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Payment { user_id: u32, ok: bool, ts: i64 }
//!
//! let env = Env::local(2);
//! let payments = (0..1_000).map(|i| Payment { user_id: i % 7, ok: i % 3 != 0, ts: i as i64 * 100 });
//! let fails = env.from_collection(payments)
//!     .assign_timestamps(|p| p.ts, BoundedOutOfOrderness::new(Duration::from_secs(2)))
//!     .filter(|p| !p.ok)
//!     .key_by(|p| p.user_id)
//!     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
//!     .aggregate(Count)
//!     .collect();
//! env.execute("fails-per-minute").unwrap();
//! assert_eq!(fails.take().iter().map(|w| w.value).sum::<u64>(), 334);
//! ```

mod builder;
pub mod cep;
mod env;
mod error;
pub mod job;
mod kafka_io;
mod keyed;
mod options;
mod stream;
pub mod tail;

pub use env::{init_logging, Env};
pub use error::{DslError, Result};
pub use keyed::{KeyedStream, WindowedStream};
pub use options::{EnvOptions, JobConfig};
pub use stream::{Sink, Stream};

/// Kafka connectors (source, sink, dead letters, configuration), for [`Env::read_kafka`] and
/// [`Stream::write_kafka`].
pub use floe_operators::kafka;
/// Counters and gauges, and the process-wide registry they are listed in.
pub use floe_runtime::metrics;

/// Everything a job usually needs, in one import.
pub mod prelude {
    pub use crate::cep::{AfterMatchSkipStrategy, Match, Pattern, PatternStream, TimedOut};
    pub use crate::{init_logging, Env, EnvOptions, KeyedStream, Sink, Stream, WindowedStream};
    pub use floe_checkpoints::AggregateFunction;
    pub use floe_operators::aggregate::{Count, Max, Sum};
    pub use floe_operators::keyed::{
        AggregatingStateDescriptor, KeyedContext, KeyedProcessFunction, ListStateDescriptor, MapStateDescriptor,
        ReducingStateDescriptor, TimeDomain, ValueStateDescriptor,
    };
    pub use floe_operators::process::{ProcessContext, ProcessFunction};
    pub use floe_operators::sink::collect::CollectHandle;
    pub use floe_operators::sink::count::CountHandle;
    pub use floe_operators::source::file::BadRecord;
    pub use floe_operators::timestamps::BoundedOutOfOrderness;
    pub use floe_operators::window::{
        EventTimeSessionWindows, ProcessWindowFunction, ProcessingTimeSessionWindows, SlidingEventTimeWindows,
        SlidingProcessingTimeWindows, TimeWindow, TumblingEventTimeWindows, TumblingProcessingTimeWindows, Windowed,
    };
    pub use floe_operators::{Collector, OutputTag};
    pub use floe_runtime::{JobHandle, JobResult, ManualClock, Record, Timestamp, UserError};
}
