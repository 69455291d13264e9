//! The Kafka source (Flink's `KafkaSource`): partitions are assigned to subtasks by Floe, not
//! by consumer-group rebalancing, and their offsets live in Floe's checkpoints.
//!
//! - **Assignment**: partition `p` of topic `t` is read by subtask
//!   [`assigned_subtask`]`(t, p, parallelism)`; every subtask computes the same answer. New
//!   partitions and new topics matching a pattern are discovered while the job runs and read
//!   from their earliest offset.
//! - **Offsets**: each checkpoint stores (topic, partition, next offset) for every partition
//!   as union operator state, so a job restored at any parallelism resumes exactly where the
//!   checkpoint was taken. When a checkpoint completes, its offsets are committed to the
//!   consumer group (if there is one) for lag tools; they are never read back except with
//!   [`StartPosition::GroupOffsets`].
//! - **Event time**: records carry the Kafka timestamp or one taken from the value
//!   ([`TimestampsFrom`]); watermarks are tracked per partition with bounded
//!   out-of-orderness, the subtask's is the least over its partitions that are not idle.
//! - **Dead letters**: a record that does not deserialize becomes a
//!   [`DeadLetter`] on a side output (or a rate-limited warning), and is counted; the job goes
//!   on.
//! - **Faults**: while brokers are unreachable the source reports itself idle and librdkafka
//!   keeps retrying; configuration errors fail the job, and so does a partition whose next
//!   offset the brokers no longer hold (records deleted before they were read), unless an
//!   [`OffsetOutOfRange`] policy says to skip them (counted in [`RECORDS_LOST_METRIC`] and
//!   logged). librdkafka never resets an offset by itself (`auto.offset.reset=error`).

mod assignment;
mod builder;
mod client;
mod deser;
mod lag;
mod out_of_range;
mod partitions;
mod watermarks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_checkpoints::StateSnapshot;
use floe_runtime::metrics::Counter;
use floe_runtime::{
    CheckpointBarrier, Data, OperatorContext, Output, Record, Result, RuntimeError, SourceFunction, SourceStatus,
    NO_TIMESTAMP,
};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;
use tracing::{info, warn};

use self::assignment::Running;
use self::builder::Settings;
use self::partitions::{decode_item, encode_item, Position};
use self::watermarks::{PartitionWatermarks, WatermarkEmit};
use crate::kafka::rate_limit::RateLimit;
use crate::kafka::DeadLetter;

pub use self::builder::{KafkaSourceBuilder, TimestampsFrom};
pub use self::deser::{AndThen, Bytes, Deserializer, Envelope, Json, KafkaMessage, Utf8, WithMetadata};
pub use self::lag::CONSUMER_LAG_METRIC;
pub use self::out_of_range::{OffsetOutOfRange, RECORDS_LOST_METRIC};
pub use self::partitions::{assigned_subtask, OffsetReset, StartPosition};

/// How long a `poll_batch` that finds no record waits in librdkafka for one (it returns as
/// soon as one arrives, so a quiet source reacts at once and a busy one never sleeps past
/// its data; the task checks for barriers and stop requests between calls).
const POLL_WAIT: Duration = Duration::from_millis(5);
/// Name of the counter of records a Kafka source read, dead letters included (label
/// `operator`), as the DSL lists [`KafkaSource::records_read`].
pub const RECORDS_READ_METRIC: &str = "floe_kafka_records_read_total";
/// Completed-checkpoint offsets kept for committing (older ones are dropped).
const MAX_PENDING_COMMITS: usize = 16;

/// Reads Kafka topics into records of `T`; see the [module docs](self).
///
/// ```no_run
/// use floe_operators::kafka::source::{Json, KafkaSource, StartPosition, TimestampsFrom};
/// use floe_operators::kafka::{DeadLetter, KafkaConfig};
/// use floe_operators::OutputTag;
/// use std::time::Duration;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Payment { user: u64, ts: i64 }
///
/// let dead: OutputTag<DeadLetter> = OutputTag::new("dead-letters");
/// let source = KafkaSource::builder(KafkaConfig::new("127.0.0.1:9092"))
///     .topics(["payments"])
///     .deserializer(Json::<Payment>::new())
///     .group_id("fraud-detection")
///     .start(StartPosition::Earliest)
///     .timestamps(TimestampsFrom::field(|p: &Payment| p.ts))
///     .max_out_of_orderness(Duration::from_secs(2))
///     .idle_timeout(Duration::from_secs(30))
///     .dead_letters(dead.id())
///     .build()?;
/// let bad_records = source.dead_letter_counter(); // shared by every subtask's copy
/// # let _ = bad_records;
/// # Ok::<(), floe_runtime::RuntimeError>(())
/// ```
pub struct KafkaSource<T> {
    settings: Arc<Settings<T>>,
    /// Side output of dead letters (the builder's, or set per copy by the DSL).
    dead_letter_tag: Option<u64>,
    dead_letters: Counter,
    records_read: Counter,
    records_lost: Counter,
    run: Option<Running>,
}

impl<T> Clone for KafkaSource<T> {
    /// An unopened source with the same settings and the same dead-letter counter: one
    /// per subtask.
    fn clone(&self) -> Self {
        KafkaSource {
            settings: self.settings.clone(),
            dead_letter_tag: self.dead_letter_tag,
            dead_letters: self.dead_letters.clone(),
            records_read: self.records_read.clone(),
            records_lost: self.records_lost.clone(),
            run: None,
        }
    }
}

impl<T> KafkaSource<T> {
    /// An unopened copy (as [`Clone`]) that emits dead letters on side output `tag`
    /// (`None`: counts and logs them only).
    pub fn with_dead_letter_tag(&self, tag: Option<u64>) -> Self {
        let mut copy = self.clone();
        copy.dead_letter_tag = tag;
        copy
    }

    /// What the source reads, for names in the job graph and logs (topics or pattern).
    pub fn describe(&self) -> String {
        match &self.settings.topics {
            client::Topics::Names(names) => names.join(","),
            client::Topics::Pattern(re) => format!("/{}/", re.as_str()),
        }
    }

    /// Records set aside so far (they did not deserialize, or the deserializer rejected
    /// them), over this source and its clones.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.get()
    }

    /// The counter behind [`dead_letters`](Self::dead_letters), to read while the job runs
    /// or to list in a [`Registry`](floe_runtime::metrics::Registry) (the DSL lists it in the
    /// global one as `floe_dead_letters_total`).
    pub fn dead_letter_counter(&self) -> Counter {
        self.dead_letters.clone()
    }

    /// Records read so far (dead letters included), over this source and its clones (the
    /// DSL lists it as [`RECORDS_READ_METRIC`]).
    pub fn records_read(&self) -> Counter {
        self.records_read.clone()
    }

    /// Records skipped because they were deleted before they were read, as the
    /// [`OffsetOutOfRange`] policy allows, over this source and its clones (per partition:
    /// [`RECORDS_LOST_METRIC`]).
    pub fn records_lost(&self) -> Counter {
        self.records_lost.clone()
    }

    /// The partitions this subtask reads, as (topic, partition, next offset) with a
    /// negative offset where it is not known yet (empty before `open`).
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.run.as_ref().map_or_else(Vec::new, |r| {
            r.parts
                .iter()
                .map(|p| (p.topic.to_string(), p.partition, p.position.to_stored()))
                .collect()
        })
    }
}

impl<T: Data> KafkaSource<T> {
    fn dead_letter(
        &self,
        warn_dead: &mut RateLimit,
        m: &KafkaMessage<'_>,
        error: String,
        dead: &mut Vec<Record<DeadLetter>>,
    ) {
        self.dead_letters.inc();
        if self.dead_letter_tag.is_some() {
            dead.push(Record::new(
                DeadLetter {
                    error,
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                },
                m.timestamp().unwrap_or(NO_TIMESTAMP),
            ));
        } else if let Some(suppressed) = warn_dead.check() {
            warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                %error,
                suppressed,
                total = self.dead_letters.get(),
                "Kafka source: record skipped: it does not deserialize (set .dead_letters(tag) to keep such records)"
            );
        }
    }
}

impl<T: Data> SourceFunction for KafkaSource<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let s = &self.settings;
        let info = ctx.info();
        let span = tracing::info_span!(
            "kafka_source",
            job = %info.job_name,
            operator = %info.operator_name,
            subtask = info.subtask_index,
            topics = %s.topics.describe(),
        );
        let _e = span.enter();
        let client_id = format!("floe-{}-{}-{}", info.job_name, info.operator_name, info.subtask_index);
        let reporting = s
            .config
            .properties
            .get("statistics.interval.ms")
            .is_none_or(|ms| ms.trim() != "0");
        let lag = lag::ConsumerLag::new(info, reporting);
        let consumer = client::create_consumer(&s.config, s.group_id.as_deref(), &client_id, s.bounded, lag)?;
        let now = ctx.processing_time();
        let watermarks = PartitionWatermarks::new(s.bound_ms, s.idle_ms);
        let lost = out_of_range::LostRecords::new(info, self.records_lost.clone());
        let mut run = Running::new(
            consumer,
            span.clone(),
            info.subtask_index,
            info.parallelism,
            watermarks,
            lost,
        );
        if let Some(restored) = ctx.restored_state() {
            let mut restored_parts = 0;
            for item in &restored.union {
                let (topic, partition, offset) = decode_item(item)?;
                run.initial_done = true;
                if s.topics.selects(&topic) && run.adopt(&topic, partition, Position::from_stored(offset), now) {
                    restored_parts += 1;
                }
            }
            info!(restored_parts, "Kafka source: positions restored from the checkpoint");
        }
        drop(_e);
        self.run = Some(run);
        Ok(())
    }

    fn poll_batch(&mut self, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let Some(mut run) = self.run.take() else {
            return Err(RuntimeError::Internal("Kafka source polled before open".into()));
        };
        let r = self.poll_run(&mut run, ctx, out);
        self.run = Some(run);
        r
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        let Some(run) = self.run.as_mut() else {
            return Ok(StateSnapshot::default());
        };
        let union = run
            .parts
            .iter()
            .map(|p| encode_item(&p.topic, p.partition, p.position.to_stored()))
            .collect::<Result<Vec<_>>>()?;
        let offsets = run
            .parts
            .iter()
            .filter_map(|p| match p.position {
                Position::Next(o) => Some((p.topic.clone(), p.partition, o)),
                Position::Unresolved(_) => None,
            })
            .collect();
        run.checkpoints.insert(barrier.id, offsets);
        while run.checkpoints.len() > MAX_PENDING_COMMITS {
            run.checkpoints.pop_first();
        }
        Ok(StateSnapshot {
            union,
            ..StateSnapshot::default()
        })
    }

    fn notify_checkpoint_complete(&mut self, id: u64, _ctx: &mut OperatorContext) -> Result<()> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let _e = run.span.clone().entered();
        let Some(offsets) = run.checkpoints.remove(&id) else {
            return Ok(());
        };
        run.checkpoints = run.checkpoints.split_off(&id);
        if self.settings.group_id.is_none() || offsets.is_empty() {
            return Ok(());
        }
        let committed = client::offsets_list(offsets.iter().map(|(t, p, o)| (&**t, *p, *o)))
            .and_then(|tpl| run.consumer.commit(&tpl, CommitMode::Async));
        if let Err(e) = committed {
            warn!(error = %e, checkpoint = id, "Kafka source: committing the checkpoint's offsets to the consumer group failed");
        }
        Ok(())
    }
}

impl<T: Data> KafkaSource<T> {
    fn poll_run(&self, run: &mut Running, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<SourceStatus> {
        let settings = &*self.settings;
        let span = run.span.clone();
        let _e = span.enter();
        let now = ctx.processing_time();
        assignment::discover(settings, run, now);
        assignment::resolve(settings, run)?;
        if run.out_of_range && Instant::now() >= run.next_resolve {
            out_of_range::handle(settings, run)?;
        }

        let max = ctx.info().batch_size.max(1);
        let mut records: Vec<Record<T>> = Vec::new();
        let mut dead: Vec<Record<DeadLetter>> = Vec::new();
        let mut finished: Vec<usize> = Vec::new();
        let mut eof = false;
        let mut read = 0;
        let mut wait = POLL_WAIT;
        while read < max {
            let m = match run.consumer.poll(std::mem::take(&mut wait)) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    eof = true;
                    continue;
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    // librdkafka stopped fetching a partition whose position the brokers do
                    // not hold; which one, and what to do, is decided at the next poll.
                    run.out_of_range = true;
                    continue;
                }
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(RuntimeError::external("Kafka source: the consumer failed", e));
                }
                Some(Err(e)) => {
                    if let Some(suppressed) = run.warn_consume.check() {
                        warn!(error = %e, suppressed, "Kafka source: consuming failed; librdkafka retries");
                    }
                    break;
                }
            };
            let view = KafkaMessage::from_borrowed(&m);
            let Some(i) = run.lookup(view.topic(), view.partition()) else {
                continue;
            };
            let part = &mut run.parts[i];
            if part.done || matches!(part.position, Position::Next(n) if view.offset() < n) {
                continue;
            }
            if part.stop.is_some_and(|s| view.offset() >= s) {
                part.done = true;
                finished.push(i);
                continue;
            }
            part.position = Position::Next(view.offset() + 1);
            part.held = true;
            if part.stop.is_some_and(|s| view.offset() + 1 >= s) {
                part.done = true;
                finished.push(i);
            }
            read += 1;
            if let Some(from) = part.skip_before {
                if view.timestamp().is_some_and(|ts| ts < from) {
                    continue;
                }
                part.skip_before = None;
            }
            match settings.deserializer.deserialize(&view) {
                Ok(value) => {
                    let ts = match &settings.timestamps {
                        TimestampsFrom::Kafka => view.timestamp(),
                        TimestampsFrom::Field(f) => Some(f(&value)),
                    };
                    match ts {
                        Some(ts) => run.watermarks.on_record(i, ts, now),
                        None => run.watermarks.on_activity(i, now),
                    }
                    if records.capacity() == 0 {
                        records.reserve_exact(max);
                    }
                    records.push(Record::new(value, ts.unwrap_or(NO_TIMESTAMP)));
                }
                Err(error) => {
                    match (&settings.timestamps, view.timestamp()) {
                        (TimestampsFrom::Kafka, Some(ts)) => run.watermarks.on_record(i, ts, now),
                        _ => run.watermarks.on_activity(i, now),
                    }
                    self.dead_letter(&mut run.warn_dead, &view, error, &mut dead);
                }
            }
        }
        self.records_read.add(read as u64);
        if eof && settings.bounded {
            // The fetch position may pass the stop offset without a record at it
            // (transaction markers): nothing is left to read there.
            if let Ok(positions) = run.consumer.position() {
                for e in positions.elements() {
                    let (Offset::Offset(pos), Some(i)) = (e.offset(), run.lookup(e.topic(), e.partition())) else {
                        continue;
                    };
                    let p = &mut run.parts[i];
                    if let (false, Some(stop)) = (p.done, p.stop) {
                        if pos >= stop {
                            p.position = Position::Next(stop);
                            p.done = true;
                            finished.push(i);
                        }
                    }
                }
            }
        }
        if !finished.is_empty() {
            for &i in &finished {
                run.watermarks.finish(i);
            }
            // Stop fetching them (records already fetched are skipped as done).
            let paused = client::offsets_list(
                finished
                    .iter()
                    .map(|&i| (&*run.parts[i].topic, run.parts[i].partition, 0)),
            )
            .and_then(|tpl| run.consumer.pause(&tpl));
            if let Err(e) = paused {
                tracing::debug!(error = %e, "Kafka source: pausing finished partitions");
            }
        }
        if let (Some(tag), false) = (self.dead_letter_tag, dead.is_empty()) {
            out.emit_side(tag, Box::new(dead))?;
        }
        if !records.is_empty() {
            out.emit(Box::new(records))?;
        }
        if run.discovered || !run.parts.is_empty() {
            hold_back_idleness(run, now);
            match run.watermarks.update(now) {
                Some(WatermarkEmit::Advance(wm)) => out.emit_watermark(wm)?,
                Some(WatermarkEmit::Idle) => out.emit_idle()?,
                None => {}
            }
        }
        if settings.bounded && run.discovered && run.parts.iter().all(|p| p.done) {
            return Ok(SourceStatus::Finished);
        }
        Ok(if read > 0 {
            SourceStatus::More
        } else {
            // It waited in `poll` already.
            SourceStatus::Idle(Duration::ZERO)
        })
    }
}

/// A partition whose records wait at the broker is not idle, however long the broker takes
/// to deliver them: idleness is for partitions with nothing to read (Flink's rule, made
/// safe). Without this check a slow broker or a long fetch makes a partition look idle, the
/// watermark passes its waiting records, and they arrive late. Only partitions due to go idle
/// are checked, against the consumer's last statistics (lag from its fetch responses, once a
/// second; no request): one with lag, or with no fetch response reported yet, is not known to
/// be empty and holds the watermark. Idleness starts at most a report later than before.
fn hold_back_idleness(run: &mut Running, now: floe_runtime::Timestamp) {
    for i in 0..run.parts.len() {
        if !run.watermarks.idle_due(i, now) {
            continue;
        }
        let p = &run.parts[i];
        if p.assigned && !p.done && !run.consumer.context().lag.caught_up(&p.topic, p.partition) {
            run.watermarks.on_activity(i, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaConfig;

    #[test]
    fn clones_share_the_dead_letter_counter() {
        let a = KafkaSource::builder(KafkaConfig::new("b:1"))
            .topics(["a"])
            .deserializer(Utf8)
            .build()
            .unwrap();
        let b = a.clone();
        a.dead_letters.add(2);
        assert_eq!(b.dead_letters(), 2);
        assert_eq!(a.dead_letter_counter().get(), 2);
    }
}
