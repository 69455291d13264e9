//! Sources: in-memory collections, a deterministic generator, and line-oriented files
//! (JSON lines, CSV) split into byte ranges that parallel subtasks share.

pub mod collection;
pub mod file;
pub mod generator;
mod sequences;

#[cfg(test)]
pub(crate) mod test_support;
