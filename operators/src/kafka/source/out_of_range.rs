//! A partition's next offset that the brokers no longer have (retention or `DeleteRecords`
//! removed records before the source read them) or never had (the topic was deleted and
//! created again, or its log truncated).
//!
//! librdkafka would reset such a partition by itself (`auto.offset.reset`), silently
//! skipping whatever was between. The source tells it to report the error instead
//! (`auto.offset.reset=error`; librdkafka then stops fetching the partition), finds which
//! partitions are out of range by asking for their earliest and latest offsets, and
//! applies the [`OffsetOutOfRange`] policy: by default the job fails with an error naming
//! the topic, the partition, the position and the offsets the partition holds; a policy
//! chosen on the builder (or by the `auto.offset.reset` property) skips instead, counting
//! the records it skips in [`RECORDS_LOST_METRIC`] and logging the range.

use floe_runtime::metrics::{Counter, Registry};
use floe_runtime::{Result, RuntimeError, TaskInfo};
use rdkafka::error::KafkaError;
use tracing::{error, info, warn};

use super::assignment::Running;
use super::builder::Settings;
use super::client::{self, EARLIEST, LATEST};
use super::partitions::Position;

/// Name of the counter of records a source skipped because they were gone before it read
/// them (labels `job`, `operator`, `topic`, `partition`).
pub const RECORDS_LOST_METRIC: &str = "floe_kafka_records_lost_total";

/// What the source does when a partition it reads from holds its next offset no longer
/// (records deleted before they were read) or not yet (the partition is shorter than the
/// position: the topic was created again).
///
/// Without a choice on the builder, a `auto.offset.reset` property in the configuration
/// chooses (`earliest`: [`SkipToEarliest`](Self::SkipToEarliest), `latest`:
/// [`SkipToLatest`](Self::SkipToLatest), `error`: [`Fail`](Self::Fail)); without that
/// either, the source fails.
///
/// ```
/// use floe_operators::kafka::source::{KafkaSource, OffsetOutOfRange, Utf8};
/// use floe_operators::kafka::KafkaConfig;
/// let source = KafkaSource::builder(KafkaConfig::new("127.0.0.1:9092"))
///     .topic("clicks")
///     .deserializer(Utf8)
///     // Clicks are worth less than a stopped job: go on after retention, counting what was lost.
///     .on_offset_out_of_range(OffsetOutOfRange::SkipToEarliest)
///     .build()?;
/// # let _ = source;
/// # Ok::<(), floe_runtime::RuntimeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetOutOfRange {
    /// Fail the job with an error naming the topic, the partition, the position and the
    /// offsets the partition holds (the default: records are never skipped unasked).
    #[default]
    Fail,
    /// Go on from the earliest offset the partition holds; the records between the
    /// position and it are counted as lost and logged.
    SkipToEarliest,
    /// Go on from the end of the partition; every record between the position and the
    /// end is counted as lost and logged.
    SkipToLatest,
}

impl OffsetOutOfRange {
    /// The policy a librdkafka `auto.offset.reset` value stands for, if it is one.
    pub(super) fn from_property(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "smallest" | "earliest" | "beginning" => Some(OffsetOutOfRange::SkipToEarliest),
            "largest" | "latest" | "end" => Some(OffsetOutOfRange::SkipToLatest),
            "error" => Some(OffsetOutOfRange::Fail),
            _ => None,
        }
    }
}

/// Where one partition stands, as the brokers answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Range {
    /// The source's next offset.
    pub(super) next: i64,
    /// The first offset the partition holds.
    pub(super) earliest: i64,
    /// The partition's end (the offset the next record written gets).
    pub(super) latest: i64,
}

/// What to do with one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// The position is in range (the error was about another partition, or the range moved
    /// since): fetch again from it.
    InRange,
    /// Go on from `at`; the offsets `lost.0..lost.1` (end excluded) will never be read.
    Resume {
        /// The new position.
        at: i64,
        /// The skipped offsets, if any.
        lost: Option<(i64, i64)>,
    },
    /// Fail the job with this message.
    Fail(String),
}

/// The decision for partition `partition` of `topic` at `range` under `policy`. `held` is
/// whether the position is one the job holds (restored from a checkpoint, given
/// explicitly or committed by the group, or reached by reading); a position only looked up
/// for the start position moves to where the partition now begins or ends, since nothing
/// was read from it yet.
pub(super) fn decide(policy: OffsetOutOfRange, held: bool, topic: &str, partition: i32, range: Range) -> Decision {
    let Range { next, earliest, latest } = range;
    if (earliest..=latest).contains(&next) {
        return Decision::InRange;
    }
    let deleted = next < earliest;
    if !held {
        let at = if deleted { earliest } else { latest };
        return Decision::Resume { at, lost: None };
    }
    match policy {
        OffsetOutOfRange::Fail if deleted => Decision::Fail(format!(
            "Kafka source: offset {next} of topic `{topic}` partition {partition} is out of range: the \
             partition holds offsets {earliest}..{latest} now, so records {next}..{} were deleted (retention \
             or DeleteRecords) before this job read them. The job stops rather than skip them; to go on \
             without them, build the source with .on_offset_out_of_range(OffsetOutOfRange::SkipToEarliest) \
             (or set auto.offset.reset=earliest): skipped records are counted in {RECORDS_LOST_METRIC}",
            earliest - 1
        )),
        OffsetOutOfRange::Fail => Decision::Fail(format!(
            "Kafka source: offset {next} of topic `{topic}` partition {partition} is out of range: the \
             partition holds offsets {earliest}..{latest} now, it ends before this job's position (was the \
             topic deleted and created again?). To read it from its start, build the source with \
             .on_offset_out_of_range(OffsetOutOfRange::SkipToEarliest) (or set auto.offset.reset=earliest)"
        )),
        OffsetOutOfRange::SkipToEarliest => Decision::Resume {
            at: earliest,
            lost: deleted.then_some((next, earliest)),
        },
        OffsetOutOfRange::SkipToLatest => Decision::Resume {
            at: latest,
            lost: deleted.then_some((next, latest)),
        },
    }
}

/// The counters of lost records of one source subtask.
pub(super) struct LostRecords {
    job: String,
    operator: String,
    /// Over all partitions and every subtask of the source (its clones share it).
    total: Counter,
}

impl LostRecords {
    pub(super) fn new(info: &TaskInfo, total: Counter) -> Self {
        LostRecords {
            job: info.job_name.clone(),
            operator: info.operator_name.clone(),
            total,
        }
    }

    fn add(&self, topic: &str, partition: i32, n: u64) {
        let partition = partition.to_string();
        Registry::global()
            .counter(
                RECORDS_LOST_METRIC,
                "Records of a Kafka partition deleted before the source read them, which it skipped as its \
                 offset-out-of-range policy says",
                &[
                    ("job", &self.job),
                    ("operator", &self.operator),
                    ("topic", topic),
                    ("partition", &partition),
                ],
            )
            .add(n);
        self.total.add(n);
    }
}

/// After librdkafka reported an offset out of range: finds the partitions whose position
/// is outside what the brokers hold, applies the policy (an error fails the job), and
/// restarts fetching. If the brokers cannot be asked now, leaves `run.out_of_range` set to
/// try again at the next poll.
pub(super) fn handle<T>(settings: &Settings<T>, run: &mut Running) -> Result<()> {
    let reading: Vec<usize> = (0..run.parts.len())
        .filter(|&i| {
            let p = &run.parts[i];
            p.assigned && !p.done && matches!(p.position, Position::Next(_))
        })
        .collect();
    let ranges = match ranges(settings, run, &reading) {
        Ok(r) => r,
        Err(e) => {
            run.out_of_range = true;
            run.failed("looking up the offsets of partitions out of range", &e);
            return Ok(());
        }
    };
    run.out_of_range = false;
    for (&i, range) in reading.iter().zip(ranges) {
        let Some(range) = range else {
            continue;
        };
        let p = &mut run.parts[i];
        match decide(settings.out_of_range, p.held, &p.topic, p.partition, range) {
            Decision::InRange => {}
            Decision::Fail(message) => {
                error!(
                    topic = &*p.topic,
                    partition = p.partition,
                    position = range.next,
                    earliest = range.earliest,
                    latest = range.latest,
                    "Kafka source: offset out of range"
                );
                return Err(RuntimeError::InvalidRecord(message));
            }
            Decision::Resume { at, lost: None } => {
                info!(
                    topic = &*p.topic,
                    partition = p.partition,
                    from = range.next,
                    to = at,
                    "Kafka source: the start offset left the partition before it was read; starting at its new {}",
                    if at == range.earliest { "beginning" } else { "end" }
                );
                p.position = Position::Next(at);
            }
            Decision::Resume { at, lost: Some((a, b)) } => {
                warn!(
                    topic = &*p.topic,
                    partition = p.partition,
                    lost = b - a,
                    policy = ?settings.out_of_range,
                    "Kafka source: lost offsets {a}..{} of topic `{}` partition {}: out of range (deleted before they were read); going on at {at}",
                    b - 1,
                    p.topic,
                    p.partition
                );
                run.lost.add(&p.topic, p.partition, u64::try_from(b - a).unwrap_or(0));
                p.position = Position::Next(at);
            }
        }
        if let (Position::Next(next), Some(stop)) = (p.position, p.stop) {
            if next >= stop {
                p.done = true;
                run.watermarks.finish(i);
            }
        }
    }
    run.reassign()
}

/// Each partition's next offset with the earliest and latest offsets the brokers hold.
fn ranges<T>(settings: &Settings<T>, run: &Running, reading: &[usize]) -> Result<Vec<Option<Range>>, KafkaError> {
    let ask = |query: i64| -> Vec<(&str, i32, i64)> {
        reading
            .iter()
            .map(|&i| (&*run.parts[i].topic, run.parts[i].partition, query))
            .collect()
    };
    let timeout = settings.request_timeout;
    let earliest = client::list_offsets(&run.consumer, &ask(EARLIEST), timeout)?;
    let latest = client::list_offsets(&run.consumer, &ask(LATEST), timeout)?;
    Ok(reading
        .iter()
        .zip(earliest.into_iter().zip(latest))
        .map(|(&i, ends)| match (run.parts[i].position, ends) {
            (Position::Next(next), (Some(earliest), Some(latest))) => Some(Range { next, earliest, latest }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OffsetOutOfRange::*;

    fn range(next: i64, earliest: i64, latest: i64) -> Range {
        Range { next, earliest, latest }
    }

    #[test]
    fn in_range_positions_are_left_alone() {
        for policy in [Fail, SkipToEarliest, SkipToLatest] {
            for next in [100, 150, 200] {
                assert_eq!(decide(policy, true, "t", 0, range(next, 100, 200)), Decision::InRange);
            }
        }
    }

    #[test]
    fn deleted_records_fail_the_job_unless_a_policy_says_to_skip_them() {
        let r = range(28_618, 191_973, 375_445);
        let Decision::Fail(message) = decide(Fail, true, "payments", 0, r) else {
            panic!("fails by default");
        };
        for needle in [
            "`payments` partition 0",
            "offset 28618",
            "191973..375445",
            "records 28618..191972 were deleted",
            "SkipToEarliest",
        ] {
            assert!(message.contains(needle), "{needle:?} in {message}");
        }
        assert_eq!(
            decide(SkipToEarliest, true, "payments", 0, r),
            Decision::Resume {
                at: 191_973,
                lost: Some((28_618, 191_973))
            }
        );
        assert_eq!(
            decide(SkipToLatest, true, "payments", 0, r),
            Decision::Resume {
                at: 375_445,
                lost: Some((28_618, 375_445))
            }
        );
    }

    #[test]
    fn a_position_past_the_end_loses_nothing_that_existed() {
        let r = range(500, 0, 20);
        let Decision::Fail(message) = decide(Fail, true, "t", 2, r) else {
            panic!("fails by default");
        };
        assert!(message.contains("created again"), "{message}");
        assert_eq!(
            decide(SkipToEarliest, true, "t", 2, r),
            Decision::Resume { at: 0, lost: None }
        );
        assert_eq!(
            decide(SkipToLatest, true, "t", 2, r),
            Decision::Resume { at: 20, lost: None }
        );
    }

    #[test]
    fn a_start_offset_nothing_was_read_from_follows_the_partition() {
        for policy in [Fail, SkipToEarliest, SkipToLatest] {
            assert_eq!(
                decide(policy, false, "t", 0, range(5, 10, 30)),
                Decision::Resume { at: 10, lost: None }
            );
            assert_eq!(
                decide(policy, false, "t", 0, range(50, 10, 30)),
                Decision::Resume { at: 30, lost: None }
            );
        }
    }

    #[test]
    fn auto_offset_reset_values_map_to_policies() {
        assert_eq!(OffsetOutOfRange::from_property("earliest"), Some(SkipToEarliest));
        assert_eq!(OffsetOutOfRange::from_property(" Smallest "), Some(SkipToEarliest));
        assert_eq!(OffsetOutOfRange::from_property("latest"), Some(SkipToLatest));
        assert_eq!(OffsetOutOfRange::from_property("end"), Some(SkipToLatest));
        assert_eq!(OffsetOutOfRange::from_property("error"), Some(Fail));
        assert_eq!(OffsetOutOfRange::from_property("sometimes"), None);
    }
}
