//! Sinks: stdout, JSON-lines files, exactly-once part files (JSON lines, Parquet), in-memory
//! collection (tests) and counting (benchmarks).

pub mod collect;
pub mod count;
pub mod exactly_once;
pub mod format;
pub mod json_lines;
pub mod parquet;
pub mod print;
