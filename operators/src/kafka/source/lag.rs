//! Consumer lag per partition, from librdkafka's statistics: every `statistics.interval.ms`
//! (1 s unless the user sets it) the consumer reports, from its last fetch responses, each
//! assigned partition's high watermark and the offset after the last record handed to the
//! source. No request to the brokers is made for it and the poll loop never waits on it: the
//! statistics arrive inside the poll the source makes anyway.
//!
//! The lag is listed as `floe_kafka_consumer_lag{job,operator,topic,partition}`: high
//! watermark minus the next offset to read (0 when caught up; a transactional producer's
//! commit markers count as one record each).
//! A partition's lag appears once the consumer has had a fetch response for it (that is
//! where its high watermark comes from), and keeps its last value after the partition is
//! no longer read by this subtask.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use floe_runtime::metrics::{claim_job_attempt, Gauge, Registry};
use floe_runtime::TaskInfo;
use rdkafka::statistics::Statistics;

/// The metric's name.
pub const CONSUMER_LAG_METRIC: &str = "floe_kafka_consumer_lag";

/// A topic's lag gauges and last lags, by partition.
type PartitionLags = HashMap<i32, (Gauge, i64)>;

/// One source subtask's lag gauges (and the last lag reported), by topic and partition.
#[derive(Debug)]
pub(crate) struct ConsumerLag {
    job: String,
    operator: String,
    gauges: Mutex<HashMap<String, PartitionLags>>,
    /// Whether librdkafka reports statistics (the user may turn them off).
    reporting: bool,
}

impl ConsumerLag {
    /// Lag gauges for the source subtask `info`, from a consumer that reports statistics if
    /// `reporting`.
    pub(crate) fn new(info: &TaskInfo, reporting: bool) -> Self {
        claim_job_attempt(&info.job_name, info.attempt);
        ConsumerLag {
            job: info.job_name.clone(),
            operator: info.operator_name.clone(),
            gauges: Mutex::default(),
            reporting,
        }
    }

    /// Whether the last report said `topic`/`partition` has nothing left to read (no lag).
    /// Before a report with a fetch response for it, it is not known to: `false`. Without
    /// statistics nothing is known either way: `true`, so that callers fall back to what
    /// they did without this.
    pub(crate) fn caught_up(&self, topic: &str, partition: i32) -> bool {
        if !self.reporting {
            return true;
        }
        let gauges = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        gauges
            .get(topic)
            .and_then(|t| t.get(&partition))
            .is_some_and(|(_, lag)| *lag == 0)
    }

    /// Updates the gauges from one statistics report.
    pub(crate) fn update(&self, stats: &Statistics) {
        let mut gauges = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        for (topic, t) in &stats.topics {
            for (&partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                let fetched = p.next_offset - p.fetchq_cnt;
                let Some(lag) = partition_lag(partition, p.desired, p.hi_offset, p.app_offset, fetched) else {
                    continue;
                };
                let (gauge, last) = gauges
                    .entry(topic.clone())
                    .or_default()
                    .entry(partition)
                    .or_insert_with(|| {
                        let partition = partition.to_string();
                        let gauge = Registry::global().gauge(
                            CONSUMER_LAG_METRIC,
                            "Records of a Kafka partition not yet read by the source: high watermark minus next offset",
                            &[
                                ("job", &self.job),
                                ("operator", &self.operator),
                                ("topic", topic),
                                ("partition", &partition),
                            ],
                        );
                        (gauge, lag)
                    });
                gauge.set(lag);
                *last = lag;
            }
        }
    }
}

/// The lag of one partition: high watermark minus the next offset to read (the offset after
/// the last record handed to the source, or before any, the first offset fetched: the next
/// offset to fetch less the records waiting in the fetch queue); `None` for a partition not
/// assigned or not yet fetched from.
fn partition_lag(partition: i32, assigned: bool, high: i64, app: i64, first_fetched: i64) -> Option<i64> {
    if partition < 0 || !assigned || high < 0 {
        return None;
    }
    let next = if app >= 0 { app } else { first_fetched };
    (next >= 0).then(|| (high - next).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_high_watermark_minus_next_offset() {
        assert_eq!(
            partition_lag(0, true, 100, 40, 90),
            Some(60),
            "the application's position, not the fetcher's"
        );
        assert_eq!(partition_lag(0, true, 100, -1001, 0), Some(100), "nothing read yet");
        assert_eq!(
            partition_lag(0, true, 100, -1001, 20),
            Some(80),
            "nothing read, from offset 20"
        );
        assert_eq!(partition_lag(0, true, 100, 100, 100), Some(0));
        assert_eq!(partition_lag(0, true, 5, 7, 7), Some(0), "never negative");
        assert_eq!(partition_lag(-1, true, 100, 0, 0), None);
        assert_eq!(partition_lag(2, false, 100, 0, 0), None);
        assert_eq!(partition_lag(2, true, -1001, 0, 0), None);
    }

    #[test]
    fn statistics_json_updates_one_gauge_per_assigned_partition() {
        let info = TaskInfo::new("lag-unit", "kafka-source", 0, 1, 128);
        let lag = ConsumerLag::new(&info, true);
        let json = r#"{"name":"c","client_id":"c","type":"consumer","ts":1,"time":1,"age":1,"replyq":0,
            "msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,
            "txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,"simple_cnt":0,"metadata_cache_cnt":0,
            "brokers":{},"topics":{"orders":{"topic":"orders","age":1,"metadata_age":1,"batchsize":
            {"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
            "batchcnt":{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0},
            "partitions":{
              "0":{"partition":0,"broker":1,"leader":1,"desired":true,"unknown":false,"msgq_cnt":0,"msgq_bytes":0,
                "xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"active",
                "query_offset":0,"next_offset":120,"app_offset":100,"stored_offset":-1001,"committed_offset":-1001,
                "eof_offset":-1001,"lo_offset":0,"hi_offset":130,"ls_offset":130,"consumer_lag":-1,"consumer_lag_stored":-1,
                "txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,
                "next_ack_seq":0,"next_err_seq":0,"acked_msgid":0},
              "-1":{"partition":-1,"broker":-1,"leader":-1,"desired":false,"unknown":false,"msgq_cnt":0,"msgq_bytes":0,
                "xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,"fetchq_size":0,"fetch_state":"none",
                "query_offset":-1001,"next_offset":0,"app_offset":-1001,"stored_offset":-1001,"committed_offset":-1001,
                "eof_offset":-1001,"lo_offset":-1001,"hi_offset":-1001,"ls_offset":-1001,"consumer_lag":-1,"consumer_lag_stored":-1,
                "txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,"rx_ver_drops":0,"msgs_inflight":0,
                "next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}}}}}"#;
        let stats: Statistics = serde_json::from_str(json).expect("statistics JSON as librdkafka writes it");
        lag.update(&stats);
        let labels = [
            ("job", "lag-unit"),
            ("operator", "kafka-source"),
            ("topic", "orders"),
            ("partition", "0"),
        ];
        assert_eq!(Registry::global().value(CONSUMER_LAG_METRIC, &labels), Some(30.0));
        assert_eq!(lag.gauges.lock().unwrap().values().map(HashMap::len).sum::<usize>(), 1);
    }
}
