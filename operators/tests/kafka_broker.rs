//! The test broker is a real Kafka-protocol broker: topics, produce, consume.

use std::time::Duration;

use floe_operators::kafka::testing::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, TopicPartitionList};

#[test]
fn broker_round_trips_records_per_partition() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("t", 3).unwrap();
    let producer: BaseProducer = broker.config().client_config(&[]).create().unwrap();
    for p in 0..3 {
        producer
            .send(BaseRecord::to("t").partition(p).key("k").payload(&format!("v{p}")))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = broker
        .config()
        .client_config(&[("group.id", "g"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let meta = consumer.fetch_metadata(Some("t"), Duration::from_secs(10)).unwrap();
    assert_eq!(meta.topics()[0].partitions().len(), 3);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("t", p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = consumer.poll(Duration::from_secs(10)).expect("a record").unwrap();
        got.push((
            m.partition(),
            String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
        ));
    }
    got.sort();
    assert_eq!(got, vec![(0, "v0".into()), (1, "v1".into()), (2, "v2".into())]);
}
