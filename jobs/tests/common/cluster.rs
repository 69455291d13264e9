//! What the fraud job's cluster tests share beyond the cluster itself (which is
//! `floe_testkit::cluster::Cluster`, like every other test's): pushing event time past the
//! generated payments, and waiting for and checking the alerts.
#![allow(dead_code)] // each test uses its own subset

use std::time::Duration;

use floe_testkit::wait_for;

/// Writes one OK payment an hour past every generated one to each partition of `topic`:
/// the watermark of a job that follows the topic then passes every real payment, and the
/// rule's last matches fire (a bounded run gets this from the end of its input).
pub fn advance_event_time(broker: &floe_dsl::kafka::testing::TestBroker, topic: &str, partitions: i32) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = broker.config().client_config(&[]).create().unwrap();
    for p in 0..partitions {
        let payment = floe_jobs::payments::Payment {
            event_id: u64::MAX - p as u64,
            user_id: u32::MAX,
            status: floe_jobs::payments::Status::Ok,
            amount: 1.0,
            ts: 1_767_225_600_000 + 10 * 24 * 3_600_000,
        };
        let payload = serde_json::to_vec(&payment).unwrap();
        producer
            .send(BaseRecord::to(topic).partition(p).key("end").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Waits until as many alerts are committed to `fraud-alerts` as the fraud rule raises on
/// `payments` (the job follows the topic, so there is no end to wait for), then fails,
/// naming each alert missing or doubled, unless each of the rule's alerts is committed
/// exactly once and nothing else.
pub fn assert_alerts_exact(broker: &floe_dsl::kafka::testing::TestBroker, payments: &[floe_jobs::payments::Payment]) {
    let expected: Vec<Vec<u64>> = floe_jobs::fraud::oracle(payments)
        .into_iter()
        .map(|a| a.event_ids)
        .collect();
    assert!(expected.len() > 30, "the data raises alerts: {}", expected.len());
    wait_for("every alert", Duration::from_secs(120), || {
        let read = broker.read_committed("fraud-alerts").unwrap();
        (read.records.len() >= expected.len()).then_some(())
    });
    crate::common::assert_exactly_once(broker, "fraud-alerts", expected, crate::common::alert_payments);
}
