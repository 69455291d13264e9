//! Floe's engine: stream elements, the job graph, tasks and channels, barrier alignment,
//! watermarks and timers.
//!
//! A job arrives as a [`JobGraph`] of operator descriptions; [`execute`] expands it into
//! parallel subtasks, chains operators that can call each other directly, connects the rest
//! with bounded channels that carry batches of records and in-band control elements
//! (watermarks, checkpoint barriers, end of stream), runs one thread per task, and reports
//! the first failure with the operator and subtask that raised it.
//!
//! Nothing here names a concrete operator or connector: those live in `floe-operators` and
//! reach the runtime as [`Operator`] and [`SourceFunction`] trait objects.

mod align;
mod chain;
mod coordinator;
pub mod describe;
mod element;
mod error;
mod executor;
mod graph;
pub mod harness;
pub mod metrics;
pub mod net;
mod operator;
mod route;
mod state_dir;
mod task;
mod time;
mod timers;

pub use align::{BarrierAligner, BarrierOutcome, WatermarkUpdate, WatermarkValve};
pub use coordinator::{CheckpointConfig, CheckpointEvent};
pub use element::{
    downcast_batch, Batch, BatchData, CheckpointBarrier, Data, Message, Record, Timestamp, MAX_WATERMARK,
    MIN_WATERMARK, NO_TIMESTAMP,
};
pub use error::{Fault, Result, RuntimeError, UserError};
pub use executor::{execute, spawn, ExecutionConfig, JobControl, JobHandle, JobResult};
pub use graph::{Edge, JobGraph, Node, NodeId, NodeKind, OperatorFactory, OutputSlot, ShipStrategy, SourceFactory};
pub use net::{AttemptSecret, BatchCodec, BincodeCodec, Placement, DEFAULT_MAX_FRAME};
pub use operator::{Operator, OperatorContext, Output, SourceFunction, SourceStatus, TaskInfo};
pub use route::{EdgeWriter, EdgeWriterFactory, Route, TypedEdgeWriterFactory};
pub use state_dir::{default_state_dir, private_dir};
pub use time::{Clock, ManualClock, SystemClock};
pub use timers::{TimerService, TimerStore};
