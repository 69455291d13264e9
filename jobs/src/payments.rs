//! Payment events and a deterministic generator of realistic payment streams.

use serde::{Deserialize, Serialize};

/// Outcome of a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Accepted.
    Ok,
    /// Declined.
    Fail,
}

/// One payment attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Unique id of the event.
    pub event_id: u64,
    /// Who paid.
    pub user_id: u32,
    /// Outcome.
    pub status: Status,
    /// Amount in the account currency.
    pub amount: f64,
    /// Event time, ms since the Unix epoch.
    pub ts: i64,
}

/// Shape of a generated payment stream.
#[derive(Clone, Debug)]
pub struct PaymentProfile {
    /// Number of distinct users.
    pub users: u32,
    /// Share of payments that fail, 0..=1.
    pub fail_ratio: f64,
    /// Event time of the first payment.
    pub start_ts: i64,
    /// Mean event-time gap between consecutive payments (ms).
    pub gap_ms: i64,
    /// Events arrive up to this much out of order (ms).
    pub max_disorder_ms: i64,
    /// Seed of the generator.
    pub seed: u64,
    /// Share of payments, 0..=1, made by card testers: in each block of
    /// [`attack_block`](Self::attack_block) consecutive payments one user is the attacker,
    /// and these payments are theirs, nine in ten failing (what the fraud rule looks for).
    pub attack_share: f64,
    /// Payments per attack block.
    pub attack_block: u64,
}

impl Default for PaymentProfile {
    fn default() -> Self {
        PaymentProfile {
            users: 1_000,
            fail_ratio: 0.2,
            start_ts: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            gap_ms: 5,
            max_disorder_ms: 2_000,
            seed: 7,
            attack_share: 0.0,
            attack_block: 2_000,
        }
    }
}

/// splitmix64: a tiny, good, deterministic mixer (one value per index, no state).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PaymentProfile {
    /// Payment number `i`: a pure function of the profile and `i`, so any subtask can
    /// generate any part of the stream.
    ///
    /// ```
    /// use floe_jobs::payments::PaymentProfile;
    /// let p = PaymentProfile::default();
    /// assert_eq!(p.payment(42), p.payment(42));
    /// assert!(p.payment(42).user_id < p.users);
    /// ```
    pub fn payment(&self, i: u64) -> Payment {
        let r = mix(self.seed ^ mix(i));
        let users = u64::from(self.users.max(1));
        let disorder = if self.max_disorder_ms > 0 {
            (r >> 40) as i64 % (self.max_disorder_ms + 1)
        } else {
            0
        };
        let mut fail = ((r >> 8) & 0xffff) as f64 / 65_536.0 < self.fail_ratio;
        let mut user = r % users;
        if self.attack_share > 0.0 {
            let a = mix(r);
            if (a & 0xffff) as f64 / 65_536.0 < self.attack_share {
                user = mix(self.seed ^ 0xa77a_c4e5 ^ mix(i / self.attack_block.max(1))) % users;
                fail = !(a >> 16).is_multiple_of(10);
            }
        }
        Payment {
            event_id: i,
            user_id: user as u32,
            status: if fail { Status::Fail } else { Status::Ok },
            amount: ((r >> 24) % 50_000) as f64 / 100.0,
            ts: self.start_ts + i as i64 * self.gap_ms - disorder,
        }
    }
}
