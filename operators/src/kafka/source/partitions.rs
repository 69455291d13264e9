//! Which subtask reads which partition, where reading starts, and how positions are stored
//! in checkpoints.

use std::collections::BTreeMap;

use floe_checkpoints::{decode, encode};
use floe_runtime::Result;

/// FNV-1a (64 bit) of a topic name: stable across processes, platforms and Rust versions.
pub(crate) fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The subtask (of `parallelism`) that reads partition `partition` of `topic`:
/// `(fnv1a(topic) + partition) % parallelism`. Every subtask computes the same answer
/// without talking to the others; the partitions of one topic go round robin from a
/// topic-dependent first subtask, so several small topics spread over the subtasks.
///
/// ```
/// use floe_operators::kafka::source::assigned_subtask;
/// let owners: Vec<usize> = (0..4).map(|p| assigned_subtask("payments", p, 2)).collect();
/// assert_eq!(owners[0], owners[2]);
/// assert_ne!(owners[0], owners[1]);
/// ```
pub fn assigned_subtask(topic: &str, partition: i32, parallelism: usize) -> usize {
    let p = parallelism.max(1) as u64;
    let partition = u64::from(partition.max(0) as u32);
    ((fnv1a(topic) % p + partition % p) % p) as usize
}

/// What to do for a partition without a committed offset (with
/// [`StartPosition::GroupOffsets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the first record still in the partition.
    Earliest,
    /// From the end: only records written after the source started.
    Latest,
}

/// Where a source that does not restore from a checkpoint starts reading. Offsets restored
/// from a checkpoint always win; partitions discovered while the job runs (new partitions,
/// new topics matching a pattern) start at the earliest offset.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// From the first record still in each partition (the default).
    #[default]
    Earliest,
    /// From the end of each partition as it is when the source starts.
    Latest,
    /// From the first record whose timestamp is at least this (ms since the epoch); from
    /// the end where there is none.
    Timestamp(i64),
    /// From the offsets committed by the consumer group (`.group_id(..)`), else `fallback`.
    GroupOffsets {
        /// Where partitions without a committed offset start.
        fallback: OffsetReset,
    },
    /// From these offsets, by (topic, partition); partitions not listed start at the
    /// earliest offset.
    Explicit(BTreeMap<(String, i32), i64>),
}

/// Offset stored for a partition whose start offset was not known yet at the checkpoint,
/// and which is to start at the configured [`StartPosition`] when restored.
pub(crate) const AT_START_POSITION: i64 = i64::MIN;
/// Offset stored for a partition (discovered while running) that is to start at the earliest
/// offset but whose earliest offset was not known yet at the checkpoint.
pub(crate) const AT_EARLIEST: i64 = -2;

/// Where a partition begins, before it is resolved to an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// At the configured start position.
    StartPosition,
    /// At the earliest offset.
    Earliest,
}

/// A partition's position: the offset of the next record to read, or where to begin once
/// the broker has told us which offset that is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// The next offset to read.
    Next(i64),
    /// Not known yet.
    Unresolved(Begin),
}

impl Position {
    /// As stored in a checkpoint.
    pub(crate) fn to_stored(self) -> i64 {
        match self {
            Position::Next(o) => o,
            Position::Unresolved(Begin::StartPosition) => AT_START_POSITION,
            Position::Unresolved(Begin::Earliest) => AT_EARLIEST,
        }
    }

    /// From a checkpoint.
    pub(crate) fn from_stored(o: i64) -> Self {
        match o {
            o if o >= 0 => Position::Next(o),
            AT_START_POSITION => Position::Unresolved(Begin::StartPosition),
            _ => Position::Unresolved(Begin::Earliest),
        }
    }
}

/// One union-state item: (topic, partition, next offset to read).
pub(crate) fn encode_item(topic: &str, partition: i32, offset: i64) -> Result<Vec<u8>> {
    Ok(encode(&(topic, partition, offset))?)
}

/// Decodes a union-state item.
pub(crate) fn decode_item(bytes: &[u8]) -> Result<(String, i32, i64)> {
    Ok(decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn positions_survive_a_checkpoint() {
        for p in [
            Position::Next(0),
            Position::Next(42),
            Position::Unresolved(Begin::StartPosition),
            Position::Unresolved(Begin::Earliest),
        ] {
            assert_eq!(Position::from_stored(p.to_stored()), p);
        }
        let item = encode_item("t", 3, 17).unwrap();
        assert_eq!(decode_item(&item).unwrap(), ("t".to_string(), 3, 17));
    }

    proptest! {
        #[test]
        fn every_partition_has_exactly_one_owner_and_load_is_even(
            topic in "[a-z.]{1,12}",
            partitions in 1i32..200,
            parallelism in 1usize..9,
        ) {
            let mut load = vec![0usize; parallelism];
            for p in 0..partitions {
                let owner = assigned_subtask(&topic, p, parallelism);
                prop_assert!(owner < parallelism);
                prop_assert_eq!(owner, (fnv1a(&topic).wrapping_rem(parallelism as u64) as usize + p as usize) % parallelism);
                load[owner] += 1;
            }
            let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            prop_assert!(max - min <= 1, "round robin within a topic: {:?}", load);
        }
    }
}
