//! Broker outage: a Kafka-to-Kafka job started while its only broker is down (librdkafka's
//! mock cluster, taken down and brought back up) stalls without failing, and once the broker
//! is back it delivers every record: nothing lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use floe_dsl::kafka::sink::{Delivery, KafkaSink, Utf8 as Utf8Out};
use floe_dsl::kafka::source::{KafkaSource, Utf8};
use floe_dsl::kafka::testing::mock_cluster;
use floe_dsl::kafka::KafkaConfig;
use floe_dsl::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const RECORDS: usize = 2_000;

#[test]
fn job_stalls_while_the_broker_is_down_and_loses_nothing() {
    let cluster = mock_cluster(1).unwrap();
    cluster.create_topic("in", 2, 1).unwrap();
    cluster.create_topic("out", 2, 1).unwrap();
    let kafka = KafkaConfig::new(cluster.bootstrap_servers());
    let producer: BaseProducer = kafka.client_config(&[]).create().unwrap();
    for i in 0..RECORDS {
        let v = format!("r{i}");
        producer.send(BaseRecord::to("in").key(&v).payload(&v)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    cluster.broker_down(1).unwrap();
    let env = Env::local(2);
    let sink = KafkaSink::builder(kafka.clone(), "out")
        .serializer(Utf8Out)
        .delivery(Delivery::AtLeastOnce)
        .build()
        .unwrap();
    let written = sink.metrics();
    let source = KafkaSource::builder(kafka.clone())
        .topic("in")
        .deserializer(Utf8)
        .bounded()
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    env.read_kafka(source).map(|s| s.to_uppercase()).write_kafka(sink);
    let job = env.execute_async("outage").unwrap();

    // The outage: for a second the job delivers nothing, and does not fail.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(1) {
        assert_eq!(
            written.records_written(),
            0,
            "records delivered while the broker is down"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.broker_up(1).unwrap();
    job.join().expect("the job recovers once the broker is back");

    let consumer: BaseConsumer = kafka
        .client_config(&[("group.id", "outage-reader"), ("enable.auto.commit", "false")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("out", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "only {} of {RECORDS} records arrived",
            seen.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            seen.insert(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    let expected: BTreeSet<String> = (0..RECORDS).map(|i| format!("R{i}")).collect();
    assert_eq!(seen, expected, "every record delivered, transformed");
    assert!(written.records_written() >= RECORDS as u64);
}
