//! Key groups: the unit in which keyed state is partitioned, stored and rescaled.
//!
//! `key_group = hash(key) % max_parallelism`; subtask `i` of `p` owns a contiguous range of key
//! groups, computed exactly as Flink does so that a state snapshot taken at one parallelism
//! can be split by range and restored at another.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A key group number, `0..max_parallelism`.
pub type KeyGroup = u16;

/// The default maximum parallelism, that is the number of key groups.
pub const DEFAULT_MAX_PARALLELISM: u16 = 128;

/// A hasher whose output depends only on the bytes hashed, never on the process (unlike
/// `std`'s randomly seeded `SipHash`): key groups must be the same in every run and on every
/// machine, or restored state would land on the wrong subtask.
#[derive(Default)]
struct StableHasher {
    state: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.state == 0 { FNV_OFFSET } else { self.state };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        self.state = h;
    }

    fn write_u64(&mut self, i: u64) {
        // One multiply-xor round per word instead of eight byte rounds: keys are mostly ids.
        let h = if self.state == 0 { FNV_OFFSET } else { self.state };
        self.state = (h ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u64(i64::from(i) as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's 64-bit finalizer spreads the bits so `% max_parallelism` is uniform.
        let mut k = self.state;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        k
    }
}

/// The stable 64-bit hash of a key, used for key groups.
pub fn key_group_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = StableHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// The key group a key belongs to.
///
/// ```
/// use floe_checkpoints::assign_key_group;
/// let g = assign_key_group(&"user-7", 128);
/// assert!(g < 128);
/// assert_eq!(g, assign_key_group(&"user-7", 128));
/// ```
pub fn assign_key_group<K: Hash + ?Sized>(key: &K, max_parallelism: u16) -> KeyGroup {
    (key_group_hash(key) % u64::from(max_parallelism.max(1))) as KeyGroup
}

/// The subtask (of `parallelism`) that owns `key_group`.
pub fn subtask_for_key_group(key_group: KeyGroup, max_parallelism: u16, parallelism: usize) -> usize {
    (usize::from(key_group) * parallelism) / usize::from(max_parallelism.max(1))
}

/// A contiguous range `start..end` of key groups owned by one subtask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: KeyGroup,
    /// One past the last key group of the range.
    pub end: KeyGroup,
}

impl KeyGroupRange {
    /// The range of key groups subtask `index` of `parallelism` owns.
    ///
    /// ```
    /// use floe_checkpoints::{KeyGroupRange, subtask_for_key_group};
    /// let r = KeyGroupRange::for_subtask(128, 3, 1);
    /// for g in r.start..r.end {
    ///     assert_eq!(subtask_for_key_group(g, 128, 3), 1);
    /// }
    /// ```
    pub fn for_subtask(max_parallelism: u16, parallelism: usize, index: usize) -> Self {
        let max = usize::from(max_parallelism.max(1));
        let p = parallelism.max(1);
        let start = (index * max).div_ceil(p);
        let end = ((index + 1) * max).div_ceil(p);
        KeyGroupRange {
            start: start.min(max) as KeyGroup,
            end: end.min(max) as KeyGroup,
        }
    }

    /// Whether `key_group` is in this range.
    pub fn contains(&self, key_group: KeyGroup) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start))
    }

    /// Whether the range has no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_partition_all_key_groups() {
        for max in [1u16, 7, 128, 1000] {
            for p in 1..=usize::from(max).min(17) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} i {i}");
                    assert!(!r.is_empty());
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    proptest! {
        #[test]
        fn owner_matches_range(kg in 0u16..128, p in 1usize..=128) {
            let owner = subtask_for_key_group(kg, 128, p);
            prop_assert!(KeyGroupRange::for_subtask(128, p, owner).contains(kg));
        }
    }

    #[test]
    fn hash_is_stable_and_spread() {
        // Pinned: a change of hash function would strand state saved by an earlier version.
        assert_eq!(assign_key_group(&42u64, 128), 45);
        assert_eq!(assign_key_group(&"user-7", 128), 86);
        assert_eq!(assign_key_group(&(3u32, "x".to_string()), 128), 101);
        let mut counts = [0usize; 128];
        for k in 0u64..128_000 {
            counts[usize::from(assign_key_group(&k, 128))] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "uneven key groups: {min}..{max}");
    }
}
