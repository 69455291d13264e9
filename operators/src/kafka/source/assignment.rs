//! The partitions a subtask reads: discovering them, finding where each starts (and, when
//! bounded, ends), and assigning them to the consumer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_runtime::{Result, RuntimeError, Timestamp};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use tracing::{debug, info, warn};

use super::builder::Settings;
use super::client::{self, SourceConsumer, EARLIEST, LATEST};
use super::out_of_range::LostRecords;
use super::partitions::{assigned_subtask, Begin, OffsetReset, Position, StartPosition};
use super::watermarks::PartitionWatermarks;
use crate::kafka::rate_limit::RateLimit;

/// How a partition's start offset is found.
#[derive(Clone, Copy)]
pub(super) enum Ask {
    /// It is known.
    Known(i64),
    /// By this `ListOffsets` query.
    Query(i64),
}

/// One partition this subtask reads.
pub(super) struct Partition {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) position: Position,
    /// Bounded reading: the end offset seen at start; reading stops there.
    pub(super) stop: Option<i64>,
    pub(super) assigned: bool,
    /// Starting from a time: records before the first one at or after it are skipped.
    pub(super) skip_before: Option<Timestamp>,
    pub(super) done: bool,
    /// Whether the position is one the job holds (restored from a checkpoint, given
    /// explicitly, committed by the group, or reached by reading), rather than only looked
    /// up for the start position: see [`out_of_range::decide`](super::out_of_range::decide).
    pub(super) held: bool,
}

/// A source's state once open.
pub(super) struct Running {
    pub(super) consumer: SourceConsumer,
    pub(super) span: tracing::Span,
    pub(super) subtask: usize,
    pub(super) parallelism: usize,
    pub(super) parts: Vec<Partition>,
    pub(super) topic_ids: HashMap<String, usize>,
    pub(super) index: HashMap<(usize, i32), usize>,
    /// The partition the last lookup found (`usize::MAX`: none): records come in runs from
    /// one partition. Atomic only so that an unopened source stays `Sync`.
    last_lookup: AtomicUsize,
    /// The first discovery is done (or was before the checkpoint restored): partitions found
    /// from now on are new and start at the earliest offset.
    pub(super) initial_done: bool,
    /// Whether a discovery succeeded in this run: until then, the subtask does not know what
    /// it reads (no idleness, no end).
    pub(super) discovered: bool,
    pub(super) next_discovery: Option<Instant>,
    pub(super) next_resolve: Instant,
    pub(super) failures: u32,
    pub(super) watermarks: PartitionWatermarks,
    /// Offsets of checkpoints taken and not yet completed, to commit when they complete.
    pub(super) checkpoints: BTreeMap<u64, Vec<(Arc<str>, i32, i64)>>,
    pub(super) warn_consume: RateLimit,
    pub(super) warn_dead: RateLimit,
    pub(super) warn_broker: RateLimit,
    /// librdkafka reported an offset out of range that is not handled yet.
    pub(super) out_of_range: bool,
    /// Records skipped by the offset-out-of-range policy.
    pub(super) lost: LostRecords,
}

impl Running {
    /// A subtask's state before any partition is known.
    pub(super) fn new(
        consumer: SourceConsumer,
        span: tracing::Span,
        subtask: usize,
        parallelism: usize,
        watermarks: PartitionWatermarks,
        lost: LostRecords,
    ) -> Self {
        Running {
            consumer,
            span,
            subtask,
            parallelism: parallelism.max(1),
            parts: Vec::new(),
            topic_ids: HashMap::new(),
            index: HashMap::new(),
            last_lookup: AtomicUsize::new(usize::MAX),
            initial_done: false,
            discovered: false,
            next_discovery: Some(Instant::now()),
            next_resolve: Instant::now(),
            failures: 0,
            watermarks,
            checkpoints: BTreeMap::new(),
            warn_consume: RateLimit::default(),
            warn_dead: RateLimit::default(),
            warn_broker: RateLimit::default(),
            out_of_range: false,
            lost,
        }
    }

    /// The index in `parts` of `partition` of `topic`, if this subtask reads it.
    pub(super) fn lookup(&self, topic: &str, partition: i32) -> Option<usize> {
        let last = self.last_lookup.load(Ordering::Relaxed);
        if let Some(p) = self.parts.get(last) {
            if p.partition == partition && &*p.topic == topic {
                return Some(last);
            }
        }
        let t = *self.topic_ids.get(topic)?;
        let i = self.index.get(&(t, partition)).copied()?;
        self.last_lookup.store(i, Ordering::Relaxed);
        Some(i)
    }

    /// Adds partition `partition` of `topic` if this subtask owns it and does not read it yet.
    pub(super) fn adopt(&mut self, topic: &str, partition: i32, position: Position, now: Timestamp) -> bool {
        if assigned_subtask(topic, partition, self.parallelism) != self.subtask {
            return false;
        }
        let next_id = self.topic_ids.len();
        let t = *self.topic_ids.entry(topic.to_string()).or_insert(next_id);
        if self.index.contains_key(&(t, partition)) {
            return false;
        }
        let i = self.watermarks.add_partition(now);
        debug_assert_eq!(i, self.parts.len());
        self.index.insert((t, partition), i);
        self.parts.push(Partition {
            topic: Arc::from(topic),
            partition,
            position,
            stop: None,
            assigned: false,
            skip_before: None,
            done: false,
            held: matches!(position, Position::Next(_)),
        });
        true
    }

    /// Gives the consumer the partitions to read, each at its next offset. (`assign` replaces
    /// the whole assignment: librdkafka's incremental assignment needs a group membership,
    /// which a source without a group id does not have. Records fetched but not yet polled
    /// are fetched again from the positions, which are those of the records emitted.)
    pub(super) fn reassign(&mut self) -> Result<()> {
        let positions = self
            .parts
            .iter()
            .filter(|p| p.assigned && !p.done)
            .filter_map(|p| match p.position {
                Position::Next(next) => Some((&*p.topic, p.partition, next)),
                Position::Unresolved(_) => None,
            });
        client::offsets_list(positions)
            .and_then(|tpl| self.consumer.assign(&tpl))
            .map_err(|e| RuntimeError::external("Kafka source: assigning partitions to the consumer", e))
    }

    /// Backs off after a failed request to the brokers.
    pub(super) fn failed(&mut self, what: &str, error: &KafkaError) {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_millis(250u64 << self.failures.min(7));
        self.next_resolve = Instant::now() + wait;
        if let Some(d) = self.next_discovery.as_mut() {
            *d = (*d).max(Instant::now() + wait);
        }
        if let Some(suppressed) = self.warn_broker.check() {
            warn!(%error, retry_in_ms = wait.as_millis() as u64, suppressed, "Kafka source: {what} failed; retrying");
        }
    }
}

pub(super) fn discover<T>(settings: &Settings<T>, run: &mut Running, now: Timestamp) {
    if run.next_discovery.is_none_or(|d| Instant::now() < d) {
        return;
    }
    match client::discover(&run.consumer, &settings.topics, settings.request_timeout) {
        Err(e) => run.failed("topic discovery", &e),
        Ok(client::Discovered { found, missing }) => {
            run.failures = 0;
            let begin = if run.initial_done {
                Begin::Earliest
            } else {
                Begin::StartPosition
            };
            let mut added = 0;
            for (topic, count) in &found {
                for p in 0..*count {
                    added += usize::from(run.adopt(topic, p, Position::Unresolved(begin), now));
                }
            }
            if added > 0 {
                info!(added, total = run.parts.len(), "Kafka source: reading new partitions");
            }
            if !missing.is_empty() {
                if let Some(suppressed) = run.warn_broker.check() {
                    warn!(
                        ?missing,
                        suppressed, "Kafka source: topics not found (yet); looking again at the next discovery"
                    );
                }
            }
            run.initial_done = true;
            run.discovered = true;
            run.next_discovery = settings.discovery_interval.map(|i| Instant::now() + i);
            if settings.bounded && !missing.is_empty() {
                run.next_discovery = Some(Instant::now() + Duration::from_secs(1));
                run.discovered = false;
            }
        }
    }
}

/// Resolves start (and, bounded, stop) offsets of new partitions and assigns them.
pub(super) fn resolve<T>(settings: &Settings<T>, run: &mut Running) -> Result<()> {
    if run.parts.iter().all(|p| p.assigned || p.done) {
        return Ok(()); // the usual case, checked on every poll without allocating
    }
    let todo: Vec<usize> = (0..run.parts.len())
        .filter(|&i| {
            let p = &run.parts[i];
            !p.done && (matches!(p.position, Position::Unresolved(_)) || (settings.bounded && p.stop.is_none()))
        })
        .collect();
    if !todo.is_empty() && Instant::now() >= run.next_resolve {
        run.next_resolve = Instant::now() + Duration::from_secs(1);
        if let Err(e) = resolve_offsets(settings, run, &todo) {
            run.failed("looking up start offsets", &e);
        }
    }
    // Assign what is ready.
    let ready: Vec<usize> = (0..run.parts.len())
        .filter(|&i| {
            let p = &run.parts[i];
            !p.assigned && !p.done && matches!(p.position, Position::Next(_)) && (!settings.bounded || p.stop.is_some())
        })
        .collect();
    for &i in &ready {
        let p = &mut run.parts[i];
        if let (Position::Next(next), Some(stop)) = (p.position, p.stop) {
            if next >= stop {
                p.done = true;
                run.watermarks.finish(i);
            }
        }
    }
    let ready: Vec<usize> = ready.into_iter().filter(|&i| !run.parts[i].done).collect();
    if ready.is_empty() {
        return Ok(());
    }
    for &i in &ready {
        let p = &mut run.parts[i];
        p.assigned = true;
        debug!(topic = &*p.topic, partition = p.partition, position = ?p.position, "Kafka source: partition assigned");
    }
    run.reassign()
}

fn resolve_offsets<T>(settings: &Settings<T>, run: &mut Running, todo: &[usize]) -> Result<(), KafkaError> {
    let timeout = settings.request_timeout;
    let mut asks: Vec<(usize, Ask)> = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    for &i in todo {
        let p = &run.parts[i];
        let ask = match (p.position, &settings.start) {
            (Position::Next(_), _) => continue, // only its stop is missing
            (Position::Unresolved(Begin::Earliest), _) => Ask::Query(EARLIEST),
            (Position::Unresolved(Begin::StartPosition), start) => match start {
                StartPosition::Earliest => Ask::Query(EARLIEST),
                StartPosition::Latest => Ask::Query(LATEST),
                StartPosition::Timestamp(ts) => Ask::Query(*ts),
                StartPosition::Explicit(map) => map
                    .get(&(p.topic.to_string(), p.partition))
                    .map_or(Ask::Query(EARLIEST), |o| Ask::Known(*o)),
                StartPosition::GroupOffsets { .. } => {
                    group.push(i);
                    continue;
                }
            },
        };
        asks.push((i, ask));
    }
    if !group.is_empty() {
        let asked: Vec<(&str, i32)> = group
            .iter()
            .map(|&i| (&*run.parts[i].topic, run.parts[i].partition))
            .collect();
        let committed = client::committed(&run.consumer, &asked, timeout)?;
        let fallback = match settings.start {
            StartPosition::GroupOffsets {
                fallback: OffsetReset::Latest,
            } => LATEST,
            _ => EARLIEST,
        };
        asks.extend(
            group
                .iter()
                .zip(committed)
                .map(|(&i, c)| (i, c.map_or(Ask::Query(fallback), Ask::Known))),
        );
    }
    // ListOffsets: one round for the starts, one for the ends (a partition may appear only
    // once in a request).
    let starts: Vec<(usize, i64)> = asks
        .iter()
        .filter_map(|&(i, ask)| match ask {
            Ask::Query(q) => Some((i, q)),
            Ask::Known(_) => None,
        })
        .collect();
    let queries: Vec<(&str, i32, i64)> = starts
        .iter()
        .map(|&(i, q)| (&*run.parts[i].topic, run.parts[i].partition, q))
        .collect();
    let mut answers = client::list_offsets(&run.consumer, &queries, timeout)?;
    // A timestamp after every record: start at the end.
    let past_end: Vec<usize> = (0..queries.len())
        .filter(|&k| answers[k].is_none() && queries[k].2 >= 0)
        .collect();
    let again: Vec<(&str, i32, i64)> = past_end.iter().map(|&k| (queries[k].0, queries[k].1, LATEST)).collect();
    for (k, a) in past_end
        .into_iter()
        .zip(client::list_offsets(&run.consumer, &again, timeout)?)
    {
        answers[k] = a;
    }
    let stops: Vec<usize> = if settings.bounded {
        todo.iter().copied().filter(|&i| run.parts[i].stop.is_none()).collect()
    } else {
        Vec::new()
    };
    let queries: Vec<(&str, i32, i64)> = stops
        .iter()
        .map(|&i| (&*run.parts[i].topic, run.parts[i].partition, LATEST))
        .collect();
    let ends = client::list_offsets(&run.consumer, &queries, timeout)?;
    for (i, ask) in asks {
        if let Ask::Known(o) = ask {
            run.parts[i].position = Position::Next(o);
            run.parts[i].held = true;
        }
    }
    for ((i, query), answer) in starts.into_iter().zip(answers) {
        if let Some(offset) = answer {
            let p = &mut run.parts[i];
            p.position = Position::Next(offset);
            // Some brokers answer a time query with an earlier offset (tansu: the first);
            // records before the first at or after the time are skipped, so the start is
            // exact anyway.
            p.skip_before = (query >= 0).then_some(query);
        }
    }
    for (i, end) in stops.into_iter().zip(ends) {
        run.parts[i].stop = end;
    }
    run.failures = 0;
    Ok(())
}
