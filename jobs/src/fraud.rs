//! The fraud rule of the flagship job, and a direct implementation of it to test against.
//!
//! The rule: per user, order the user's FAIL payments by event time (ties by event id);
//! five consecutive ones (OK payments in between do not matter) whose first and last
//! timestamps differ by **less than 60,000 ms** raise one alert; after an alert, matching
//! resumes after its last payment.

use std::collections::BTreeMap;
use std::time::Duration;

use floe_dsl::cep::{AfterMatchSkipStrategy, Pattern, PatternStream};
use floe_dsl::kafka::sink::{Delivery, Json as JsonOut, KafkaSink, KafkaSinkBuilder};
use floe_dsl::kafka::source::{Json, KafkaSource, KafkaSourceBuilder, StartPosition, TimestampsFrom};
use floe_dsl::kafka::KafkaConfig;
use floe_dsl::Stream;
use serde::{Deserialize, Serialize};

use crate::payments::{Payment, Status};

/// How many failed payments make an alert.
pub const FAILS: usize = 5;
/// Within how long (ms, exclusive) from the first to the last of them.
pub const WITHIN_MS: i64 = 60_000;

/// One alert: a user's five failed payments within a minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The user.
    pub user_id: u32,
    /// Event time of the first failed payment (ms).
    pub first_ts: i64,
    /// Event time of the last one (ms).
    pub last_ts: i64,
    /// The failed payments' event ids, in event-time order.
    pub event_ids: Vec<u64>,
    /// Their amounts, summed.
    pub total_amount: f64,
}

impl Alert {
    /// The alert for `fails`, a user's failed payments in event-time order.
    pub fn of<'a>(fails: impl IntoIterator<Item = &'a Payment>) -> Alert {
        let mut alert = Alert {
            user_id: 0,
            first_ts: 0,
            last_ts: 0,
            event_ids: Vec::with_capacity(FAILS),
            total_amount: 0.0,
        };
        for (i, p) in fails.into_iter().enumerate() {
            if i == 0 {
                (alert.user_id, alert.first_ts) = (p.user_id, p.ts);
            }
            alert.last_ts = p.ts;
            alert.event_ids.push(p.event_id);
            alert.total_amount += p.amount;
        }
        alert
    }
}

/// How far behind the largest payment time (per partition) the watermark stays.
pub const OUT_OF_ORDERNESS: Duration = Duration::from_secs(2);

/// Reads payments (JSON) from `topic` from the earliest offset, with event time from `ts`
/// and watermarks [`OUT_OF_ORDERNESS`] behind, committing offsets to `group`.
pub fn payments_source(kafka: KafkaConfig, topic: &str, group: &str) -> KafkaSourceBuilder<Payment> {
    KafkaSource::builder(kafka)
        .topic(topic)
        .deserializer(Json::<Payment>::new())
        .group_id(group)
        .start(StartPosition::Earliest)
        .timestamps(TimestampsFrom::field(|p: &Payment| p.ts))
        .max_out_of_orderness(OUT_OF_ORDERNESS)
}

/// Writes alerts (JSON, keyed by user) to `topic` with `delivery`.
pub fn alerts_sink(kafka: KafkaConfig, topic: &str, delivery: Delivery) -> KafkaSinkBuilder<Alert> {
    KafkaSink::builder(kafka, topic)
        .serializer(JsonOut)
        .key(|a: &Alert| Some(a.user_id.to_string().into_bytes()))
        .delivery(delivery)
}

/// The rule as a CEP pattern: five FAIL payments (others in between do not matter) within
/// 60 s of event time, matching resumed after the last of them.
pub fn pattern() -> Pattern<Payment> {
    Pattern::begin_with_skip("fails", AfterMatchSkipStrategy::SkipPastLastEvent)
        .where_(|p: &Payment| p.status == Status::Fail)
        .times(FAILS as u32)
        .within(Duration::from_millis(WITHIN_MS as u64))
}

/// The rule applied to `payments` (which must carry event timestamps): per user, in event
/// time with ties broken by event id.
pub fn matches(payments: &Stream<Payment>) -> PatternStream<u32, Payment> {
    payments
        .key_by(|p| p.user_id)
        .pattern(pattern())
        .tie_breaker(|a, b| a.event_id.cmp(&b.event_id))
}

/// The alerts the rule raises on `payments` (see [`matches`]).
pub fn detect(payments: &Stream<Payment>) -> Stream<Alert> {
    matches(payments).select(|m| Alert::of(m.get("fails")))
}

/// The alerts the rule raises on `payments`, applied directly (the test oracle), sorted by
/// user and first timestamp.
///
/// ```
/// use floe_jobs::fraud::oracle;
/// use floe_jobs::payments::{Payment, Status};
/// let fail = |id, ts| Payment { event_id: id, user_id: 1, status: Status::Fail, amount: 1.0, ts };
/// let five: Vec<Payment> = (0..5).map(|i| fail(i, i as i64 * 14_000)).collect(); // 56 s apart
/// assert_eq!(oracle(&five).len(), 1);
/// let slow: Vec<Payment> = (0..5).map(|i| fail(i, i as i64 * 15_000)).collect(); // exactly 60 s
/// assert!(oracle(&slow).is_empty());
/// ```
pub fn oracle(payments: &[Payment]) -> Vec<Alert> {
    let mut fails: BTreeMap<u32, Vec<&Payment>> = BTreeMap::new();
    for p in payments.iter().filter(|p| p.status == Status::Fail) {
        fails.entry(p.user_id).or_default().push(p);
    }
    let mut alerts = Vec::new();
    for mut f in fails.into_values() {
        f.sort_by_key(|p| (p.ts, p.event_id));
        let mut i = 0;
        while i + FAILS <= f.len() {
            if f[i + FAILS - 1].ts - f[i].ts < WITHIN_MS {
                alerts.push(Alert::of(f[i..i + FAILS].iter().copied()));
                i += FAILS;
            } else {
                i += 1;
            }
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(id: u64, user: u32, fail: bool, ts: i64) -> Payment {
        Payment {
            event_id: id,
            user_id: user,
            status: if fail { Status::Fail } else { Status::Ok },
            amount: id as f64,
            ts,
        }
    }

    #[test]
    fn ok_payments_between_do_not_matter_and_matching_resumes_after_the_last() {
        let mut ps = Vec::new();
        for i in 0..12u64 {
            ps.push(pay(i, 7, i != 3, i as i64 * 1_000)); // payment 3 is OK
        }
        ps.push(pay(99, 8, true, 0)); // another user
        let alerts = oracle(&ps);
        assert_eq!(alerts.len(), 2, "11 fails: two alerts, one left over");
        assert_eq!(alerts[0].event_ids, vec![0, 1, 2, 4, 5]);
        assert_eq!(alerts[1].event_ids, vec![6, 7, 8, 9, 10]);
        assert_eq!(alerts[0].total_amount, 12.0);
    }

    #[test]
    fn a_window_too_long_moves_the_start_by_one() {
        // 0, 1, 2, 3 s, then 61 s .. : the first five span 61 s; starting at 1 s they do not.
        let ts = [0, 1_000, 2_000, 3_000, 60_000, 60_500];
        let ps: Vec<Payment> = ts.iter().enumerate().map(|(i, t)| pay(i as u64, 1, true, *t)).collect();
        let alerts = oracle(&ps);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].event_ids, vec![1, 2, 3, 4, 5]);
        assert_eq!((alerts[0].first_ts, alerts[0].last_ts), (1_000, 60_500));
    }
}
