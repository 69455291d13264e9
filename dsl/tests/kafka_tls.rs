//! Kafka over TLS: a job reads and writes through a broker reachable only over TLS
//! (`TestBroker::start_tls`: tansu behind a TLS-terminating proxy with a self-signed
//! certificate), configured only through librdkafka properties; a client that does not
//! trust the certificate gets nothing.

use std::time::Duration;

use floe_dsl::kafka::sink::{Delivery, KafkaSink, Utf8 as Utf8Out};
use floe_dsl::kafka::source::{KafkaSource, Utf8};
use floe_dsl::kafka::testing::TestBroker;
use floe_dsl::kafka::KafkaConfig;
use floe_dsl::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

#[test]
fn a_job_reads_and_writes_over_tls_and_an_untrusting_client_gets_nothing() {
    let broker = TestBroker::start_tls().expect("start the TLS test broker");
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    let producer: BaseProducer = broker
        .config()
        .client_config(&[("batch.num.messages", "1")])
        .create()
        .unwrap();
    for i in 0..50 {
        let v = format!("v{i}");
        producer
            .send(BaseRecord::to("in").key("k").payload(&v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let env = Env::local(1);
    let source = KafkaSource::builder(broker.config())
        .topic("in")
        .deserializer(Utf8)
        .bounded()
        .build()
        .unwrap();
    env.read_kafka(source).map(|s| s.to_uppercase()).write_kafka(
        KafkaSink::builder(broker.config(), "out")
            .serializer(Utf8Out)
            .delivery(Delivery::AtLeastOnce)
            .build()
            .unwrap(),
    );
    env.execute("tls").unwrap();

    let consumer: BaseConsumer = broker
        .config()
        .client_config(&[("group.id", "tls-reader")])
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("out", 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} records came back",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8(m.unwrap().payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(got, (0..50).map(|i| format!("V{i}")).collect::<Vec<_>>());

    // A client that does not trust the certificate, and one that speaks plaintext, see no
    // topics.
    for props in [vec![("security.protocol", "SSL")], vec![]] {
        let mut config = KafkaConfig::new(broker.brokers());
        for (k, v) in &props {
            config = config.set(*k, *v);
        }
        let c: BaseConsumer = config.client_config(&[]).create().unwrap();
        let meta = c.fetch_metadata(Some("out"), Duration::from_secs(3));
        assert!(
            meta.is_err(),
            "{props:?} read metadata: {:?}",
            meta.map(|m| m.topics().len())
        );
    }
}
