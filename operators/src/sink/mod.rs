//! Sinks: stdout, JSON-lines files, in-memory collection (tests) and counting (benchmarks).

pub mod collect;
pub mod count;
pub mod exactly_once;
pub mod json_lines;
pub mod print;
