//! What the source asks of the brokers: a consumer with manual assignment, topic metadata
//! (which topics and how many partitions), and offsets (by time, at the ends, committed).

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use tracing::{debug, warn};

use super::lag::ConsumerLag;
use crate::kafka::KafkaConfig;
use floe_runtime::{Result, RuntimeError};

/// Kafka's `ListOffsets` query for the first offset of a partition.
pub(crate) const EARLIEST: i64 = -2;
/// Kafka's `ListOffsets` query for the end offset (high watermark) of a partition.
pub(crate) const LATEST: i64 = -1;

/// The consumer's context: reports the outcome of offset commits, and turns librdkafka's
/// statistics into consumer-lag gauges.
pub(crate) struct SourceContext {
    pub(crate) lag: ConsumerLag,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.update(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition reaches here as a "global error" on bounded reads: it is
        // how they end, not a failure.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            debug!(%reason, "librdkafka: end of partition");
        } else {
            tracing::error!(error = %error, %reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(partitions = offsets.count(), "offsets committed to the consumer group"),
            Err(e) => warn!(
                error = %e,
                partitions = offsets.count(),
                "committing offsets to the consumer group failed (lag tools lag; the offsets in Floe's checkpoints are unaffected)"
            ),
        }
    }
}

/// The consumer of a source subtask.
pub(crate) type SourceConsumer = BaseConsumer<SourceContext>;

/// A consumer that never commits or stores offsets by itself and is assigned partitions
/// explicitly; the user's properties win over these defaults.
pub(crate) fn create_consumer(
    config: &KafkaConfig,
    group_id: Option<&str>,
    client_id: &str,
    bounded: bool,
    lag: ConsumerLag,
) -> Result<SourceConsumer> {
    let mut defaults = vec![
        ("client.id", client_id),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        // An offset out of range is the source's to handle (`out_of_range`), never a
        // silent jump (the builder has taken the user's `auto.offset.reset` out).
        ("auto.offset.reset", "error"),
        ("enable.partition.eof", if bounded { "true" } else { "false" }),
        // librdkafka's default (1 s) idles the fetcher between fetches once its queue is
        // full enough, capping a partition's catch-up at ~200K records/s here; 10 ms lets
        // a source read at 1M+ records/s (measured with benches/kafka-pipeline).
        ("fetch.queue.backoff.ms", "10"),
        // Consumer lag (high watermarks from fetch responses) once a second, delivered in
        // the source's own polls.
        ("statistics.interval.ms", "1000"),
    ];
    // librdkafka refuses `assign` without a group id; without one of the user's, the
    // consumer gets a group of its own that nothing is ever committed to (the brokers do
    // not learn of it: an assigned consumer never joins its group).
    let own_group = format!("{client_id}-assigned");
    defaults.push(("group.id", group_id.unwrap_or(&own_group)));
    config
        .client_config(&defaults)
        .create_with_context(SourceContext { lag })
        .map_err(|e| {
            RuntimeError::InvalidGraph(format!(
                "Kafka source: the client configuration is not valid ({e}); check the properties set on its KafkaConfig"
            ))
        })
}

/// Which topics a source reads.
#[derive(Clone, Debug)]
pub(crate) enum Topics {
    /// These topics.
    Names(Vec<String>),
    /// Every topic whose whole name matches (internal `__` topics only if the pattern
    /// itself starts with `__`).
    Pattern(Regex),
}

impl Topics {
    /// Whether `topic` is one of them.
    pub(crate) fn selects(&self, topic: &str) -> bool {
        match self {
            Topics::Names(names) => names.iter().any(|n| n == topic),
            Topics::Pattern(re) => {
                re.is_match(topic) && (!topic.starts_with("__") || re.as_str().starts_with("^(?:__"))
            }
        }
    }

    /// For logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Topics::Names(names) => names.join(","),
            Topics::Pattern(re) => format!("/{}/", re.as_str()),
        }
    }
}

/// What a discovery found.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    /// The selected topics and their partition counts.
    pub(crate) found: Vec<(String, i32)>,
    /// Selected topics (of a name list) that do not exist (yet).
    pub(crate) missing: Vec<String>,
}

/// The selected topics and their partition counts.
pub(crate) fn discover(consumer: &SourceConsumer, topics: &Topics, timeout: Duration) -> KafkaResult<Discovered> {
    let mut d = Discovered::default();
    match topics {
        Topics::Names(names) => {
            for name in names {
                let meta = consumer.fetch_metadata(Some(name), timeout)?;
                if !take(&meta, Some(name), topics, &mut d) {
                    d.missing.push(name.clone());
                }
            }
        }
        Topics::Pattern(_) => {
            take(&consumer.fetch_metadata(None, timeout)?, None, topics, &mut d);
        }
    }
    Ok(d)
}

/// Sorts the selected topics of `meta` into found and missing; whether any was there.
fn take(meta: &rdkafka::metadata::Metadata, wanted: Option<&str>, topics: &Topics, d: &mut Discovered) -> bool {
    let mut any = false;
    for t in meta.topics() {
        if wanted.is_some_and(|w| w != t.name()) || !topics.selects(t.name()) {
            continue;
        }
        any = true;
        if t.error().is_some() || t.partitions().is_empty() {
            d.missing.push(t.name().to_string());
        } else {
            d.found.push((t.name().to_string(), t.partitions().len() as i32));
        }
    }
    any
}

/// Offsets by `ListOffsets` query: a timestamp (ms), [`EARLIEST`] or [`LATEST`]. The answer
/// is `None` where no record has a timestamp at or after the one asked for.
pub(crate) fn list_offsets(
    consumer: &SourceConsumer,
    queries: &[(&str, i32, i64)],
    timeout: Duration,
) -> KafkaResult<Vec<Option<i64>>> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::with_capacity(queries.len());
    for (topic, partition, query) in queries {
        let q = match *query {
            EARLIEST => Offset::Beginning,
            LATEST => Offset::End,
            ts => Offset::Offset(ts),
        };
        tpl.add_partition_offset(topic, *partition, q)?;
    }
    let answer = consumer.offsets_for_times(tpl, timeout)?;
    queries
        .iter()
        .map(|(topic, partition, _)| {
            let e = answer.find_partition(topic, *partition).ok_or(KafkaError::OffsetFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownPartition,
            ))?;
            e.error()?;
            match e.offset() {
                Offset::Offset(o) => Ok(Some(o)),
                Offset::End | Offset::Invalid => Ok(None),
                _ => Err(KafkaError::OffsetFetch(
                    rdkafka::types::RDKafkaErrorCode::InvalidArgument,
                )),
            }
        })
        .collect()
}

/// The consumer group's committed offsets; `None` where none is committed.
pub(crate) fn committed(
    consumer: &SourceConsumer,
    partitions: &[(&str, i32)],
    timeout: Duration,
) -> KafkaResult<Vec<Option<i64>>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    let answer = consumer.committed_offsets(tpl, timeout)?;
    Ok(partitions
        .iter()
        .map(
            |(topic, partition)| match answer.find_partition(topic, *partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            },
        )
        .collect())
}

/// A partition list with explicit offsets.
pub(crate) fn offsets_list<'a>(offsets: impl Iterator<Item = (&'a str, i32, i64)>) -> KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    Ok(tpl)
}
