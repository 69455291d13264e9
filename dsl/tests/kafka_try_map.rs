//! `Stream::try_map` on records read from a real broker: what the user function rejects
//! reaches `dead_letters()` with its origin and is counted in the metrics registry; the rest
//! goes on.

use std::time::Duration;

use floe_dsl::kafka::source::{Json, KafkaSource, WithMetadata};
use floe_dsl::kafka::testing::TestBroker;
use floe_dsl::kafka::DEAD_LETTERS_METRIC;
use floe_dsl::metrics::Registry;
use floe_dsl::prelude::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Payment {
    user: u64,
    amount: i64,
}

#[test]
fn rejected_records_become_dead_letters_with_their_origin_and_are_counted() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("payments", 2).unwrap();
    let producer: BaseProducer = broker
        .config()
        .client_config(&[("batch.num.messages", "1")])
        .create()
        .unwrap();
    for i in 0..20i64 {
        let amount = if i % 5 == 0 { -i } else { i };
        let value = format!("{{\"user\":{},\"amount\":{amount}}}", i % 3);
        let record = BaseRecord::to("payments")
            .partition((i % 2) as i32)
            .key("u")
            .payload(&value)
            .timestamp(1_000 + i);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let env = Env::local(2);
    let source = KafkaSource::builder(broker.config())
        .topic("payments")
        .deserializer(WithMetadata(Json::<Payment>::new()))
        .bounded()
        .build()
        .unwrap();
    let valid = env.read_kafka(source).try_map(|p: &Payment| {
        if p.amount > 0 {
            Ok(p.amount)
        } else {
            Err(format!("amount {} is not positive", p.amount))
        }
    });
    let dead = valid.dead_letters().collect();
    let amounts = valid.collect();
    env.execute("try-map").unwrap();

    let mut amounts = amounts.take();
    amounts.sort();
    assert_eq!(amounts, (1..20).filter(|i| i % 5 != 0).collect::<Vec<i64>>());
    let mut dead = dead.take();
    dead.sort_by_key(|d| d.timestamp);
    assert_eq!(dead.len(), 4, "{dead:?}");
    for (n, d) in dead.iter().enumerate() {
        let i = n as i64 * 5;
        assert_eq!(d.error, format!("rejected: amount {} is not positive", -i));
        assert_eq!((d.topic.as_str(), d.partition), ("payments", (i % 2) as i32));
        assert_eq!(d.offset, i / 2, "records alternate between the two partitions");
        assert_eq!((d.timestamp, d.key.as_deref()), (Some(1_000 + i), Some(&b"u"[..])));
        let value: Payment = serde_json::from_slice(d.payload.as_deref().unwrap()).unwrap();
        assert_eq!(
            value,
            Payment {
                user: (i % 3) as u64,
                amount: -i
            }
        );
    }
    let counted = Registry::global()
        .snapshot()
        .into_iter()
        .filter(|s| s.name == DEAD_LETTERS_METRIC && s.labels.iter().any(|(_, v)| v.starts_with("try_map")))
        .map(|s| s.value)
        .sum::<i128>();
    assert_eq!(counted, 4);
}
