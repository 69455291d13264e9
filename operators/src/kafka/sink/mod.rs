//! The Kafka sink: writes a stream's records to a Kafka topic with no guarantee,
//! at-least-once, or exactly-once delivery (Flink's `KafkaSink` and its
//! `DeliveryGuarantee`), and the dead-letter sink built on it.
//!
//! Each record's value is serialized by a [`Serializer`] ([`Json`], [`Utf8`], [`Bytes`], a
//! closure); its key, partition and headers come from optional functions; its Kafka
//! timestamp is the record's event timestamp (or the producer's clock if it has none). Any
//! librdkafka property passes through [`KafkaConfig`] (TLS, SASL, compression, batching);
//! the values of secret properties never appear in logs or errors.
//!
//! # Delivery
//!
//! | [`Delivery`] | records reach Kafka | on a delivery failure |
//! |---|---|---|
//! | `None` | as they come | counted and logged; the job goes on |
//! | `AtLeastOnce` (default) | as they come; every checkpoint barrier waits for all to be acknowledged | the checkpoint fails (the job restarts from the last one and replays: duplicates, no loss) |
//! | `ExactlyOnce` | when the checkpoint that covers them completes, in one transaction per subtask and checkpoint | the commit fails; the restarted job commits the same records again, once |
//!
//! A full producer queue is waited out (serving delivery reports), never dropped.
//!
//! # Exactly-once with librdkafka: a write-ahead two-phase commit
//!
//! Flink keeps a Kafka transaction open across a checkpoint and, after a crash, resumes it
//! through the Java client's internals; librdkafka cannot resume another producer's
//! transaction. So Floe's sink keeps the records themselves in the checkpoint:
//!
//! 1. Between barriers, records are serialized into an in-memory buffer for the current
//!    epoch (key, value, partition, headers, timestamp: one growing byte buffer, no
//!    allocation per record).
//! 2. At barrier `n` (pre-commit), the buffer becomes pending epoch `n`. The snapshot holds
//!    the subtask's pending epochs as one operator-state item (its subtask index, the
//!    attempt id of the run, each epoch's id and records), so nothing is lost if the process
//!    dies after the checkpoint completes but before the commit.
//! 3. When checkpoint `n` completes (commit), each pending epoch `<= n`, in order, is
//!    written in one transaction of the subtask's transactional id `<prefix>-<subtask>`:
//!    begin, produce its records, send a *commit marker* to the transaction, commit. The
//!    marker is an offset commit of consumer group `floe-eos-<prefix>-<subtask>-<attempt>`
//!    (attempt in hex) for partition 0 of the output topic, with offset = the epoch and
//!    metadata = the attempt: it commits atomically with the records.
//! 4. When a restored subtask opens, `init_transactions` on its transactional id fences the
//!    previous attempt's producer (aborting its open transaction). Then, for each restored
//!    subtask's pending epochs, it reads that subtask's marker group (a consumer that never
//!    joins the group, with stable offsets asked for): an epoch at or below the marker was
//!    committed before the crash and is skipped; the others are committed now, with the
//!    same marker protocol, under the transactional id of the subtask that wrote them
//!    (fencing its zombie too). Each committed epoch is therefore written once, and a late
//!    commit by a still-running producer of the previous attempt fails: it is fenced.
//!
//! The attempt is part of the marker group's name because brokers need not keep offset
//! metadata (tansu, the broker these tests run against, drops it; Apache Kafka keeps it):
//! a marker left under the same prefix by another run of the job can never be mistaken
//! for this one's. An offset beyond the partition's end is accepted (Apache Kafka does not
//! check committed offsets against the log; tansu accepts it too). tansu applies a
//! transaction's offset commit when the transaction commits, never for one aborted or
//! fenced (`the_broker_applies_a_transactions_offset_commit_only_when_it_commits` in
//! `tests/kafka_sink.rs`), and, as a probe found, not at all for a transaction that wrote no
//! record: the sink never commits an epoch without records. Marker groups expire
//! with the broker's `offsets.retention.minutes` (7 days by default): restoring a
//! checkpoint older than that may write its pending epochs a second time.
//!
//! **Rescaling.** A snapshot holds exactly one item per subtask (even with no pending
//! epoch), so when the job is restored at another parallelism, old subtask `s` is dealt
//! to new subtask `s % parallelism` (itself, if it still exists): every old subtask's
//! epochs are committed, in order, by exactly one new subtask.
//!
//! **Latency and memory.** Exactly-once output becomes visible only when the checkpoint
//! that covers it completes: its latency is bounded by the checkpoint interval (plus the
//! time a checkpoint takes, plus one transaction: about 100 ms on tansu). Each subtask
//! holds one checkpoint interval of serialized output in memory (and, while a checkpoint
//! is in flight, its pending epochs, which the checkpoint also stores). **Without checkpointing** (`TaskInfo::checkpointing` false),
//! exactly-once delivery commits everything at the end of the input, in one transaction.
//! The topic must exist before the job starts (its partition 0 carries the markers).
//!
//! # The `floe.*` headers, and how exactly-once is checked
//!
//! Exactly-once delivery stamps every record with [`eos_headers`]: `floe.txn`
//! (transactional id), `floe.subtask` (the subtask that read the input), `floe.attempt` (the
//! run that read it), `floe.epoch` (the checkpoint), `floe.seq` (the index within the
//! subtask's epoch) and `floe.committed.by` (the run that committed the transaction: a later
//! one for an epoch that a restored run committed). They say where a record came from; they
//! cannot prove exactly-once, since a transaction committed twice would carry the same origin
//! twice (only `floe.committed.by` would tell the copies apart).
//!
//! A consumer with `isolation.level=read_committed` on Apache Kafka sees committed
//! transactions only. The brokers that run on Floe's build machines do not hide aborted
//! transactions from such consumers (tansu writes correct COMMIT and ABORT markers but never
//! fills Fetch's aborted-transactions list; librdkafka's mock cluster writes no markers), so
//! Floe's tests read the raw log instead
//! ([`log::read_committed`](crate::kafka::log::read_committed): a transaction's
//! records count once its COMMIT marker follows them) and check, by an id each input
//! carries into the output, that every input is explained by exactly one committed output
//! ([`testing::check_exactly_once`](crate::kafka::testing::check_exactly_once)).
//!
//! # Dead letters
//!
//! [`KafkaSink::dead_letters`] builds a [`DeadLetterSink`]: the records the Kafka source
//! (or a user function) set aside, each written with its original key and payload and its
//! error and origin as [`dead_letter::headers`](crate::kafka::dead_letter::headers).

mod builder;
mod dead_letters;
mod log_check;
mod producer;
mod serialize;
mod transactional;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use floe_checkpoints::StateSnapshot;
use floe_runtime::metrics::SinkLatency;
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Record, Result, RuntimeError,
    TaskInfo, NO_TIMESTAMP,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer;
use tracing::{debug, info, info_span, warn};

pub use builder::{KafkaSinkBuilder, KafkaSinkConfigError};
pub use dead_letters::{DeadLetterSerializer, DeadLetterSink};
pub use serialize::{Bytes, Json, Serializer, Utf8};
pub use transactional::{headers as eos_headers, EosStamp};

use builder::{HeadersFn, KeyFn, PartitionFn};
use producer::{kafka_error, OutRecord, SinkProducer, BROKER_TIMEOUT};
use transactional::{
    already_committed, commit_epoch, decode_pending, encode_pending, marker_group, recovery_error, transactional_id,
    EpochBuffer, EpochCommit, MarkerConsumer, PendingEpoch, PendingItem, Stamp,
};

use crate::kafka::KafkaConfig;

/// The delivery guarantee of a [`KafkaSink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// Fire and forget: failures are counted and logged, not waited for.
    None,
    /// Every checkpoint barrier (and the end of the input) waits until Kafka acknowledged
    /// every record so far, and fails if one could not be delivered.
    #[default]
    AtLeastOnce,
    /// Records are written, in Kafka transactions, when the checkpoint that covers them
    /// completes (see the [module docs](self)).
    ExactlyOnce,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    written: AtomicU64,
    failed: AtomicU64,
    transactions: AtomicU64,
    recovered: AtomicU64,
    skipped: AtomicU64,
}

/// Counters of a sink (of all its subtasks: clones share them), readable while the job runs.
#[derive(Clone, Debug, Default)]
pub struct KafkaSinkMetrics {
    pub(crate) counters: Arc<Counters>,
}

impl KafkaSinkMetrics {
    /// Records the broker acknowledged (exactly-once: records of committed transactions).
    pub fn records_written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Records that could not be delivered.
    pub fn records_failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Transactions committed (exactly-once: one per subtask and non-empty epoch).
    pub fn transactions_committed(&self) -> u64 {
        self.counters.transactions.load(Ordering::Relaxed)
    }

    /// Restored pending epochs that a restored subtask committed.
    pub fn epochs_recovered(&self) -> u64 {
        self.counters.recovered.load(Ordering::Relaxed)
    }

    /// Restored pending epochs found committed already (by their marker) and skipped.
    pub fn epochs_already_committed(&self) -> u64 {
        self.counters.skipped.load(Ordering::Relaxed)
    }
}

/// What a sink is: its configuration, shared by its clones.
pub(crate) struct Spec<T> {
    config: KafkaConfig,
    topic: String,
    serializer: Arc<dyn Serializer<T>>,
    key: Option<KeyFn<T>>,
    partitioner: Option<PartitionFn<T>>,
    headers: Option<HeadersFn<T>>,
    delivery: Delivery,
    prefix: Option<String>,
    metrics: KafkaSinkMetrics,
}

/// An open sink's connection and identity.
struct Running {
    producer: SinkProducer,
    subtask: usize,
    attempt: u64,
    checkpointing: bool,
    prefix: String,
    transactional_id: String,
    /// Partitions of the topic (read at open when a partitioner needs them).
    partitions: Option<i32>,
    /// The marker group of this subtask and attempt (exactly-once, made on first commit).
    marker: Option<MarkerConsumer>,
    span: tracing::Span,
}

/// Writes a stream's records to a Kafka topic: the terminal operator of a stream. Build it
/// with [`KafkaSink::builder`]; one clone per subtask (clones share configuration and
/// metrics, not connections).
pub struct KafkaSink<T> {
    spec: Arc<Spec<T>>,
    run: Option<Running>,
    /// Reused for each record's value (not exactly-once).
    value: Vec<u8>,
    /// Exactly-once: the current epoch's records, and epochs awaiting their checkpoint.
    epoch: EpochBuffer,
    pending: Vec<PendingEpoch>,
    /// Event-to-sink latency of this subtask, once open.
    latency: Option<SinkLatency>,
}

impl<T> Clone for KafkaSink<T> {
    /// A sink with the same configuration and metrics, not yet opened.
    fn clone(&self) -> Self {
        KafkaSink::from_arc(Arc::clone(&self.spec))
    }
}

impl<T> std::fmt::Debug for KafkaSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.spec.topic)
            .field("delivery", &self.spec.delivery)
            .field("config", &self.spec.config)
            .finish_non_exhaustive()
    }
}

fn timestamp(ts: i64) -> Option<i64> {
    (ts != NO_TIMESTAMP && ts >= 0).then_some(ts)
}

fn user_headers(headers: &[(String, Vec<u8>)]) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for (key, value) in headers {
        h = h.insert(Header {
            key,
            value: Some(value),
        });
    }
    Some(h)
}

impl<T> KafkaSink<T> {
    pub(crate) fn from_spec(spec: Spec<T>) -> Self {
        Self::from_arc(Arc::new(spec))
    }

    fn from_arc(spec: Arc<Spec<T>>) -> Self {
        KafkaSink {
            spec,
            run: None,
            value: Vec::new(),
            epoch: EpochBuffer::default(),
            pending: Vec::new(),
            latency: None,
        }
    }

    /// The counters of this sink and its clones.
    pub fn metrics(&self) -> KafkaSinkMetrics {
        self.spec.metrics.clone()
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.spec.topic
    }

    /// The delivery guarantee.
    pub fn delivery(&self) -> Delivery {
        self.spec.delivery
    }

    fn running(&mut self) -> Result<&mut Running> {
        self.run
            .as_mut()
            .ok_or_else(|| RuntimeError::Internal("the Kafka sink was used before `open`".into()))
    }

    fn partition_of(&self, value: &T, partitions: Option<i32>) -> Result<Option<i32>> {
        let Some(f) = &self.spec.partitioner else {
            return Ok(None);
        };
        let n = partitions.unwrap_or(0);
        let p = f(value, n);
        if !(0..n).contains(&p) {
            return Err(RuntimeError::InvalidRecord(format!(
                "the partitioner of the Kafka sink for topic `{}` chose partition {p} of {n}",
                self.spec.topic
            )));
        }
        Ok(Some(p))
    }

    fn serialize_error(&self, e: floe_runtime::UserError) -> RuntimeError {
        RuntimeError::User(format!("serializing a record for Kafka topic `{}`: {e}", self.spec.topic).into())
    }

    /// Producer properties for this subtask, under the user's.
    fn producer_defaults(&self, info: &TaskInfo, txn: Option<&str>) -> Vec<(String, String)> {
        let mut d = vec![(
            "client.id".to_string(),
            format!("floe-{}-{}-{}", info.job_name, info.operator_name, info.subtask_index),
        )];
        match (self.spec.delivery, txn) {
            (Delivery::ExactlyOnce, Some(id)) => d.push(("transactional.id".into(), id.into())),
            (Delivery::AtLeastOnce, _) => d.push(("enable.idempotence".into(), "true".into())),
            _ => {}
        }
        d
    }

    fn create_producer(&self, info: &TaskInfo, txn: Option<&str>) -> Result<SinkProducer> {
        let defaults = self.producer_defaults(info, txn);
        let defaults: Vec<(&str, &str)> = defaults.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = SinkProducer::create(
            &self.spec.config,
            &defaults,
            &self.spec.topic,
            &self.spec.metrics,
            txn.is_none(),
        )?;
        if let Some(id) = txn {
            // Fences earlier producers with this id and aborts their open transaction.
            p.inner()
                .init_transactions(BROKER_TIMEOUT)
                .map_err(|e| kafka_error(format!("initializing Kafka transactions of `{id}`"), e))?;
        }
        Ok(p)
    }

    /// Commits the restored pending epochs of one old subtask that are not committed yet.
    fn recover(&mut self, item: PendingItem, info: &TaskInfo) -> Result<()> {
        let spec = Arc::clone(&self.spec);
        let txn_id = transactional_id(&item.prefix, item.origin);
        let marker = MarkerConsumer::new(&spec.config, marker_group(&item.prefix, item.origin, item.attempt))?;
        let use_own =
            spec.delivery != Delivery::ExactlyOnce || self.run.as_ref().is_some_and(|r| r.transactional_id == txn_id);
        let partitions = self.run.as_ref().and_then(|r| r.partitions);
        let mut other = if use_own {
            None
        } else {
            Some(self.create_producer(info, Some(&txn_id))?)
        };
        let producer = match other.as_mut() {
            Some(p) => p,
            None => &mut self.running()?.producer,
        };
        // Read after fencing: no transaction of the old subtask can still move the marker.
        let committed = marker.read(&spec.topic)?;
        floe_failpoints::failpoint!("restore.kafka-recover", &spec.topic);
        // The epochs found committed in the output topic, read once if a marker is missing.
        let mut in_log: Option<Option<BTreeSet<u64>>> = None;
        for epoch in &item.epochs {
            if already_committed(committed, item.attempt, epoch.epoch) {
                info!(
                    origin = item.origin,
                    epoch = epoch.epoch,
                    "pending epoch was committed before the restart"
                );
                spec.metrics.counters.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let (Delivery::ExactlyOnce, Some(n)) = (spec.delivery, partitions) {
                let found = in_log.get_or_insert_with(|| {
                    log_check::committed_epochs(&spec.config, &spec.topic, n, &txn_id, item.origin, item.attempt)
                });
                if found.as_ref().is_some_and(|f| f.contains(&epoch.epoch)) {
                    warn!(
                        origin = item.origin,
                        epoch = epoch.epoch,
                        marker = ?committed,
                        "pending epoch is committed in the topic although its commit marker is missing: not committed again"
                    );
                    spec.metrics.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            info!(
                origin = item.origin,
                epoch = epoch.epoch,
                records = epoch.records.len(),
                marker = ?committed,
                "committing a restored pending epoch"
            );
            if spec.delivery == Delivery::ExactlyOnce {
                let c = EpochCommit {
                    topic: &spec.topic,
                    transactional_id: &txn_id,
                    origin: item.origin,
                    attempt: item.attempt,
                    committer: info.attempt,
                    epoch,
                };
                commit_epoch(producer, &marker, &c, &spec.metrics)?;
            } else {
                // The job left exactly-once delivery: write the epoch at least once.
                let stamp = Stamp::new(&txn_id, item.origin, item.attempt, epoch.epoch, info.attempt);
                let mut scratch = String::new();
                for (seq, r) in epoch.records.iter().enumerate() {
                    producer.send(OutRecord {
                        key: r.key,
                        value: r.value,
                        partition: r.partition,
                        timestamp: r.timestamp,
                        headers: Some(stamp.headers(&r.headers, seq as u64, &mut scratch)),
                    })?;
                }
                producer.flush()?;
                producer.check()?;
            }
            spec.metrics.counters.recovered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Commits pending epochs up to `upto` (all of them if `None`), in order.
    fn commit_pending(&mut self, upto: Option<u64>) -> Result<()> {
        let spec = Arc::clone(&self.spec);
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        while self.pending.first().is_some_and(|p| upto.is_none_or(|u| p.epoch <= u)) {
            if run.marker.is_none() {
                let group = marker_group(&run.prefix, run.subtask, run.attempt);
                run.marker = Some(MarkerConsumer::new(&spec.config, group)?);
            }
            let (Some(marker), Some(epoch)) = (run.marker.as_ref(), self.pending.first()) else {
                break;
            };
            let c = EpochCommit {
                topic: &spec.topic,
                transactional_id: &run.transactional_id,
                origin: run.subtask,
                attempt: run.attempt,
                committer: run.attempt,
                epoch,
            };
            commit_epoch(&mut run.producer, marker, &c, &spec.metrics)?;
            self.pending.remove(0);
        }
        Ok(())
    }
}

impl<T: Data> Operator for KafkaSink<T> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let info = ctx.info().clone();
        self.latency = Some(SinkLatency::new(&info));
        let span = info_span!(
            "kafka_sink",
            job = %info.job_name,
            operator = %info.operator_name,
            subtask = info.subtask_index,
            topic = %self.spec.topic,
            delivery = ?self.spec.delivery,
        );
        let _entered = span.enter();
        let prefix = self
            .spec
            .prefix
            .clone()
            .unwrap_or_else(|| format!("floe-{}-{}-{}", info.job_name, info.operator_name, info.node));
        let txn_id = transactional_id(&prefix, info.subtask_index);
        let eos = self.spec.delivery == Delivery::ExactlyOnce;
        let producer = self.create_producer(&info, eos.then_some(txn_id.as_str()))?;
        let partitions = if self.spec.partitioner.is_some() || eos {
            let n = producer.partitions()?;
            if n.is_none() {
                return Err(RuntimeError::external(
                    format!("opening the Kafka sink for topic `{}`", self.spec.topic),
                    producer::ErrorText(
                        "the topic does not exist: create it first (a partitioner needs its partition count, \
                         exactly-once delivery its partition 0 for commit markers)"
                            .into(),
                    ),
                ));
            }
            n
        } else {
            None
        };
        info!(transactional_id = eos.then_some(txn_id.as_str()), ?partitions, config = ?self.spec.config, "Kafka sink open");
        self.run = Some(Running {
            producer,
            subtask: info.subtask_index,
            attempt: info.attempt,
            checkpointing: info.checkpointing,
            prefix,
            transactional_id: txn_id,
            partitions,
            marker: None,
            span: span.clone(),
        });
        if let Some(restored) = ctx.restored_state() {
            let items = restored
                .operator
                .iter()
                .map(|i| decode_pending(i))
                .collect::<Result<Vec<_>>>()?;
            for item in items.into_iter().filter(|i| !i.epochs.is_empty()) {
                let (origin, attempt) = (item.origin, item.attempt);
                self.recover(item, &info)
                    .map_err(|e| recovery_error(origin, attempt, e))?;
            }
        }
        Ok(())
    }

    fn process_batch(&mut self, _: usize, batch: Batch, ctx: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let records: Vec<Record<T>> = downcast_batch(batch)?;
        if let Some(l) = &mut self.latency {
            l.record_batch(records.iter().map(|r| r.timestamp), ctx.processing_time());
        }
        let spec = Arc::clone(&self.spec);
        let run = self.running()?;
        let span = run.span.clone();
        let _entered = span.enter();
        let partitions = run.partitions;
        if spec.delivery == Delivery::AtLeastOnce {
            run.producer.poll();
            run.producer.check()?;
        }
        for r in &records {
            let key = spec.key.as_ref().and_then(|k| k(&r.value));
            let partition = self.partition_of(&r.value, partitions)?;
            let headers = spec.headers.as_ref().map(|h| h(&r.value)).unwrap_or_default();
            let null = spec.serializer.is_null(&r.value);
            if spec.delivery == Delivery::ExactlyOnce {
                self.epoch
                    .push(
                        key.as_deref(),
                        null,
                        |out| spec.serializer.serialize(&r.value, out),
                        partition,
                        timestamp(r.timestamp),
                        &headers,
                    )
                    .map_err(|e| self.serialize_error(e))?;
                continue;
            }
            self.value.clear();
            if !null {
                spec.serializer
                    .serialize(&r.value, &mut self.value)
                    .map_err(|e| self.serialize_error(e))?;
            }
            let record = OutRecord {
                key: key.as_deref(),
                value: (!null).then_some(self.value.as_slice()),
                partition,
                timestamp: timestamp(r.timestamp),
                headers: user_headers(&headers),
            };
            match &self.run {
                Some(run) => run.producer.send(record)?,
                None => return Err(RuntimeError::Internal("the Kafka sink was used before `open`".into())),
            }
        }
        if spec.delivery != Delivery::ExactlyOnce {
            self.running()?.producer.poll();
        }
        Ok(())
    }

    fn snapshot_state(&mut self, barrier: &CheckpointBarrier, _: &mut OperatorContext) -> Result<StateSnapshot> {
        let delivery = self.spec.delivery;
        let run = self.running()?;
        let span = run.span.clone();
        let _entered = span.enter();
        match delivery {
            Delivery::None => {
                run.producer.poll();
                Ok(StateSnapshot::default())
            }
            Delivery::AtLeastOnce => {
                run.producer.flush()?;
                run.producer.check()?;
                debug!(checkpoint = barrier.id, "Kafka sink flushed");
                Ok(StateSnapshot::default())
            }
            Delivery::ExactlyOnce => {
                let (prefix, subtask, attempt) = (run.prefix.clone(), run.subtask, run.attempt);
                if !self.epoch.is_empty() {
                    let records = std::mem::take(&mut self.epoch);
                    debug!(
                        checkpoint = barrier.id,
                        records = records.len(),
                        bytes = records.size(),
                        "Kafka sink pre-committed an epoch"
                    );
                    self.pending.push(PendingEpoch {
                        epoch: barrier.id,
                        records,
                    });
                }
                Ok(StateSnapshot {
                    operator: vec![encode_pending(&prefix, subtask, attempt, &self.pending)?],
                    ..StateSnapshot::default()
                })
            }
        }
    }

    fn notify_checkpoint_complete(&mut self, id: u64, _: &mut OperatorContext) -> Result<()> {
        if self.spec.delivery != Delivery::ExactlyOnce {
            return Ok(());
        }
        let span = self.running()?.span.clone();
        let _entered = span.enter();
        self.commit_pending(Some(id))
    }

    fn finish(&mut self, _: &mut OperatorContext, _: &mut dyn Output) -> Result<()> {
        let delivery = self.spec.delivery;
        let run = self.running()?;
        let span = run.span.clone();
        let _entered = span.enter();
        match delivery {
            Delivery::None => {
                if let Err(e) = run.producer.flush() {
                    warn!(error = %e, "Kafka sink: not every record was delivered at the end of the input");
                }
                Ok(())
            }
            Delivery::AtLeastOnce => {
                run.producer.flush()?;
                run.producer.check()
            }
            Delivery::ExactlyOnce if !run.checkpointing => {
                // No checkpoint will come: commit everything now, as epoch 0.
                if !self.epoch.is_empty() {
                    let records = std::mem::take(&mut self.epoch);
                    self.pending.push(PendingEpoch { epoch: 0, records });
                }
                self.commit_pending(None)
            }
            // The final checkpoint commits what is left.
            Delivery::ExactlyOnce => Ok(()),
        }
    }
}
