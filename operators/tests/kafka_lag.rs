//! Consumer lag of the Kafka source against a real Kafka-protocol broker (tansu on
//! loopback): `floe_kafka_consumer_lag{job,operator,topic,partition}` appears while records
//! wait to be read and goes to 0 once the source has caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_operators::kafka::source::{KafkaSource, Utf8, CONSUMER_LAG_METRIC};
use floe_operators::kafka::testing::TestBroker;
use floe_runtime::harness::CollectedOutput;
use floe_runtime::metrics::Registry;
use floe_runtime::{OperatorContext, SourceFunction, SystemClock, TaskInfo};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PER_PARTITION: i64 = 600;

fn lag(job: &str, partition: &str) -> Option<f64> {
    Registry::global().value(
        CONSUMER_LAG_METRIC,
        &[
            ("job", job),
            ("operator", "kafka"),
            ("topic", "lagging"),
            ("partition", partition),
        ],
    )
}

#[test]
fn consumer_lag_per_partition_shows_unread_records_then_zero() {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic("lagging", 2).unwrap();
    let p: BaseProducer = broker
        .config()
        // One record per batch (tansu 0.6 reports end offsets right only for those).
        .client_config(&[("linger.ms", "0"), ("batch.num.messages", "1")])
        .create()
        .expect("producer");
    for i in 0..PER_PARTITION {
        for part in 0..2 {
            let payload = format!("{part}-{i}");
            p.send(
                BaseRecord::<[u8], [u8]>::to("lagging")
                    .partition(part)
                    .payload(payload.as_bytes()),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");

    let job = format!("kafka-lag-{}", std::process::id());
    let mut info = TaskInfo::new(&job, "kafka", 0, 1, 128);
    info.batch_size = 1; // one record per poll: reading takes a few seconds
    let mut ctx = OperatorContext::new(info, Arc::new(SystemClock));
    let mut source = KafkaSource::builder(broker.config())
        .topics(["lagging"])
        .deserializer(Utf8)
        .build()
        .unwrap();
    source.open(&mut ctx).expect("open");
    let mut out = CollectedOutput::default();
    let mut read = 0usize;
    // Per partition: the largest lag seen, and the last one (lags only go down).
    let mut seen = [0.0f64; 2];
    let mut last = [f64::MAX; 2];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lags = [lag(&job, "0"), lag(&job, "1")];
        assert!(Instant::now() < deadline, "lags {lags:?} after {read} records");
        for (i, l) in lags.iter().enumerate() {
            if let Some(l) = *l {
                assert!(l <= PER_PARTITION as f64, "partition {i}: lag {l}");
                assert!(l <= last[i], "partition {i}: lag went up from {} to {l}", last[i]);
                (seen[i], last[i]) = (seen[i].max(l), l);
            }
        }
        if read == 2 * PER_PARTITION as usize && lags == [Some(0.0), Some(0.0)] {
            break;
        }
        source.poll_batch(&mut ctx, &mut out).expect("poll");
        read += out.main.drain(..).map(|b| b.len()).sum::<usize>();
        std::thread::sleep(Duration::from_millis(4)); // the pace of a slow reader under test
    }
    for (i, s) in seen.iter().enumerate() {
        assert!(*s > 0.0, "partition {i}: no lag reported while its records waited");
    }
}
