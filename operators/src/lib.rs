//! Floe's operators: transformations, process functions with keyed state and timers, windows,
//! timestamp assignment, and the sources and sinks of files, collections and generators.
//!
//! Each operator implements [`floe_runtime::Operator`] (or [`floe_runtime::SourceFunction`]);
//! the DSL builds them through factories, one instance per subtask.

pub mod aggregate;
pub mod basic;
pub mod cep;
pub mod collector;
pub mod kafka;
pub mod keyed;
pub mod process;
pub mod sink;
pub mod source;
pub mod timestamps;
pub mod window;

pub use collector::{Collector, OutputTag};
