//! The fraud rule as the job runs it (CEP on RocksDB state, watermarks 2 s behind, payments
//! up to 2 s out of order) raises exactly the alerts of the rule applied directly to the
//! same payments, at parallelism 1, 2 and 3.

use std::collections::BTreeSet;
use std::time::Duration;

use floe_dsl::prelude::*;
use floe_jobs::fraud::{self, Alert};
use floe_jobs::payments::{Payment, PaymentProfile};

const PAYMENTS: u64 = 150_000;

fn profile(seed: u64) -> PaymentProfile {
    PaymentProfile {
        users: 3_000,
        fail_ratio: 0.3,
        gap_ms: 2,
        max_disorder_ms: 2_000,
        attack_share: 0.02,
        attack_block: 1_000,
        seed,
        ..PaymentProfile::default()
    }
}

fn alerts(parallelism: usize, profile: &PaymentProfile) -> (Vec<Alert>, u64) {
    let env = Env::local(parallelism);
    let p = profile.clone();
    let payments = env
        .generate(PAYMENTS, move |i| p.payment(i))
        .assign_timestamps(|p: &Payment| p.ts, BoundedOutOfOrderness::new(Duration::from_secs(2)));
    let matches = fraud::matches(&payments);
    let metrics = matches.metrics();
    let out = matches.select(|m| Alert::of(m.get("fails"))).collect();
    env.execute("fraud-rule").unwrap();
    (out.take(), metrics.late.get())
}

#[test]
fn alerts_equal_the_rule_applied_directly_at_parallelism_1_2_and_3() {
    for (parallelism, seed) in [(1, 11), (2, 12), (3, 13)] {
        let profile = profile(seed);
        let all: Vec<Payment> = (0..PAYMENTS).map(|i| profile.payment(i)).collect();
        let expected: BTreeSet<Vec<u64>> = fraud::oracle(&all).into_iter().map(|a| a.event_ids).collect();
        assert!(expected.len() > 100, "the data raises alerts: {}", expected.len());
        let (got, late) = alerts(parallelism, &profile);
        assert_eq!(late, 0, "no payment is more than 2 s out of order");
        let got_ids: Vec<Vec<u64>> = got.iter().map(|a| a.event_ids.clone()).collect();
        let unique: BTreeSet<Vec<u64>> = got_ids.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            got_ids.len(),
            "parallelism {parallelism}: an alert raised twice"
        );
        assert!(
            unique == expected,
            "parallelism {parallelism}: {} alerts expected, {} raised; missing {:?}, unexpected {:?}",
            expected.len(),
            unique.len(),
            expected.difference(&unique).take(3).collect::<Vec<_>>(),
            unique.difference(&expected).take(3).collect::<Vec<_>>()
        );
        for a in &got {
            assert!(a.last_ts - a.first_ts < fraud::WITHIN_MS && a.event_ids.len() == fraud::FAILS);
        }
    }
}
