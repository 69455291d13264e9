//! The consumer side of `floe tail`: find the topic's partitions, choose where each one
//! starts, assign them explicitly (no group rebalancing), and print records until told to
//! stop; partitions added to the topic later are assigned from their beginning.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use floe_operators::kafka::config::is_secret;
use floe_operators::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::render::{render, RecordView};
use super::{stopped, Ended, TailArgs, TailError};

/// How long a poll waits when nothing is pending (the stop flag is checked this often).
const POLL: Duration = Duration::from_millis(100);
/// How long the brokers have to answer when `--timeout` does not say.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request of the start-up (watermarks, committed offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the topic's metadata is fetched again to find added partitions.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// Follows the topic of `args`; see [`super::run`].
pub(super) fn follow(
    args: &TailArgs,
    config: &KafkaConfig,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<Ended, TailError> {
    let mut notes = Notes::new(args.quiet, config);
    let consumer = consumer(args, config)?;
    let Some((all, new_topic)) = wait_for_topic(&consumer, args, stop, &mut notes)? else {
        return Ok(Ended::Stopped);
    };
    // Everything in a topic that did not exist when we started is new: show it all.
    let from_beginning = args.from_beginning || new_topic;
    let chosen = if args.partitions.is_empty() {
        all.clone()
    } else {
        let chosen: BTreeSet<i32> = args.partitions.iter().copied().collect();
        if let Some(&missing) = chosen.difference(&all).next() {
            return Err(TailError::NoPartition {
                topic: args.topic.clone(),
                partition: missing,
                count: all.len(),
            });
        }
        chosen
    };
    let assignment = start_positions(&consumer, args, from_beginning, &chosen, &mut notes)?;
    consumer
        .assign(&assignment)
        .map_err(|e| TailError::Kafka(notes.redact(format!("assigning the partitions: {e}"))))?;
    notes.note(&describe(args, from_beginning, &chosen));

    let ended = print_records(&consumer, args, all, out, stop, &mut notes);
    if args.group.is_some() {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => notes.warn(format!("committing the offsets of the group: {e}")),
        }
    }
    ended
}

/// A consumer with floe's settings under the user's `-X` properties.
fn consumer(args: &TailArgs, config: &KafkaConfig) -> Result<BaseConsumer, TailError> {
    // librdkafka needs a group id to assign partitions; without --group, one of our own
    // that never commits.
    let throwaway = format!(
        "floe-tail-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let committing = args.group.is_some();
    let defaults = [
        ("group.id", args.group.as_deref().unwrap_or(&throwaway)),
        ("client.id", "floe-tail"),
        ("enable.auto.commit", if committing { "true" } else { "false" }),
        // Offsets are stored once their record is written (see `print_records`).
        ("enable.auto.offset.store", "false"),
        (
            "auto.offset.reset",
            if args.from_beginning { "earliest" } else { "latest" },
        ),
        ("isolation.level", args.isolation.as_kafka()),
        ("enable.partition.eof", "false"),
        ("allow.auto.create.topics", "false"),
    ];
    config.client_config(&defaults).create().map_err(|e| {
        let message = match e {
            // The description names the property and, for a bad value, the value.
            KafkaError::ClientConfig(_, _, key, _) if is_secret(&key) => format!("the value of -X {key}"),
            KafkaError::ClientConfig(_, description, key, _) => format!("{description} (-X {key})"),
            e => e.to_string(),
        };
        TailError::Config(Notes::new(true, config).redact(message))
    })
}

/// The topic's partitions once it exists and whether it had to be waited for, or `None` if
/// stopped first.
fn wait_for_topic(
    consumer: &BaseConsumer,
    args: &TailArgs,
    stop: &AtomicBool,
    notes: &mut Notes,
) -> Result<Option<(BTreeSet<i32>, bool)>, TailError> {
    let started = Instant::now();
    let broker_limit = args.timeout.unwrap_or(BROKER_TIMEOUT);
    let mut answered = false;
    let mut waited = false;
    loop {
        if stopped(stop) {
            return Ok(None);
        }
        // Short requests, so that Ctrl-C and --timeout are noticed in time.
        let limit = if answered { args.timeout } else { Some(broker_limit) };
        let slice = limit.map_or(Duration::from_secs(1), |l| {
            l.saturating_sub(started.elapsed())
                .clamp(Duration::from_millis(100), Duration::from_secs(1))
        });
        let problem = match consumer.fetch_metadata(Some(&args.topic), slice) {
            Err(e) if !answered => {
                if started.elapsed() >= broker_limit {
                    return Err(TailError::Brokers {
                        brokers: args.brokers.clone(),
                        waited: started.elapsed(),
                        error: notes.redact(e.to_string()),
                    });
                }
                sleep(Duration::from_millis(100), stop);
                continue;
            }
            Err(e) => format!("is not available yet ({})", notes.redact(e.to_string())),
            Ok(metadata) => {
                answered = true;
                match metadata.topics().iter().find(|t| t.name() == args.topic) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        let partitions = t.partitions().iter().map(|p| p.id()).collect();
                        return Ok(Some((partitions, waited)));
                    }
                    None => "does not exist yet".to_string(),
                    Some(t) => match t.error() {
                        None => "has no partitions yet".to_string(),
                        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                            "does not exist yet".to_string()
                        }
                        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
                            return Err(TailError::Kafka(format!(
                                "not authorized to read topic `{}`; check the -X security settings (the user)",
                                args.topic
                            )))
                        }
                        Some(e) => format!("is not available yet ({:?})", RDKafkaErrorCode::from(e)),
                    },
                }
            }
        };
        if let Some(limit) = args.timeout {
            if started.elapsed() >= limit {
                return Err(TailError::NoTopic {
                    topic: args.topic.clone(),
                    waited: started.elapsed(),
                });
            }
        }
        if !waited {
            waited = true;
            let until = args.timeout.map_or("Ctrl-C to stop".to_string(), |t| {
                format!("for up to {:.1}s", t.as_secs_f64())
            });
            notes.note(&format!("topic `{}` {problem}; waiting for it ({until})", args.topic));
        }
        sleep(Duration::from_millis(250), stop);
    }
}

/// Where each chosen partition starts. Positions are resolved here rather than left to the
/// client (`Offset::End`), so that a record produced after the "following" note is shown.
fn start_positions(
    consumer: &BaseConsumer,
    args: &TailArgs,
    from_beginning: bool,
    chosen: &BTreeSet<i32>,
    notes: &mut Notes,
) -> Result<TopicPartitionList, TailError> {
    let topic = args.topic.as_str();
    let kafka = |what: &str, e: KafkaError, notes: &Notes| TailError::Kafka(notes.redact(format!("{what}: {e}")));
    let committed = match &args.group {
        Some(_) if args.offset.is_none() => {
            let mut tpl = TopicPartitionList::new();
            for &p in chosen {
                tpl.add_partition(topic, p);
            }
            Some(
                consumer
                    .committed_offsets(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| kafka("reading the group's committed offsets", e, notes))?,
            )
        }
        _ => None,
    };
    let mut assignment = TopicPartitionList::new();
    for &p in chosen {
        let stored = committed
            .as_ref()
            .and_then(|c| c.find_partition(topic, p))
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)));
        let offset = match (stored, args.offset) {
            (Some(stored), _) => stored,
            (None, None) if from_beginning => Offset::Beginning,
            (None, requested) => {
                // With read_committed, the high watermark is the last stable offset.
                let (low, high) = consumer
                    .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                    .map_err(|e| kafka(&format!("reading the end of partition {p}"), e, notes))?;
                let start = match requested {
                    None => high,
                    Some(n) if n >= 0 => n,
                    Some(n) => high.saturating_add(n),
                };
                // Records before the low watermark are gone: start at the oldest one left.
                // (An offset past the end is the broker's to judge: it resets to the end.)
                let clamped = start.max(low);
                match requested {
                    Some(n) if n < 0 && clamped != start => notes.note(&format!(
                        "partition {p} has fewer than {} records; starting at its oldest, offset {low}",
                        n.unsigned_abs()
                    )),
                    Some(_) if clamped != start => notes.note(&format!(
                        "partition {p} no longer has offsets before {low}; starting at {low}"
                    )),
                    _ => {}
                }
                Offset::Offset(clamped)
            }
        };
        assignment
            .add_partition_offset(topic, p, offset)
            .map_err(|e| kafka("choosing start offsets", e, notes))?;
    }
    Ok(assignment)
}

/// "following T (3 partitions) from the end" and the like.
fn describe(args: &TailArgs, from_beginning: bool, chosen: &BTreeSet<i32>) -> String {
    let partitions = if args.partitions.is_empty() {
        match chosen.len() {
            1 => "1 partition".to_string(),
            n => format!("{n} partitions"),
        }
    } else {
        let list: Vec<String> = chosen.iter().map(i32::to_string).collect();
        let s = if chosen.len() == 1 { "" } else { "s" };
        format!("partition{s} {}", list.join(", "))
    };
    let fallback = if from_beginning { "the beginning" } else { "the end" };
    let start = match (args.offset, &args.group) {
        (Some(n), _) if n >= 0 => format!("offset {n}"),
        (Some(-1), _) => "the last record".to_string(),
        (Some(n), _) => format!("{} records before the end", n.unsigned_abs()),
        (None, Some(group)) => format!("the committed offsets of group `{group}` ({fallback} where it has none)"),
        (None, None) => fallback.to_string(),
    };
    format!("following {} ({partitions}) from {start}", args.topic)
}

/// The printing loop.
fn print_records(
    consumer: &BaseConsumer,
    args: &TailArgs,
    mut known: BTreeSet<i32>,
    out: &mut dyn Write,
    stop: &AtomicBool,
    notes: &mut Notes,
) -> Result<Ended, TailError> {
    let committing = args.group.is_some();
    let discover = args.partitions.is_empty();
    let mut next_discovery = Instant::now() + DISCOVERY_INTERVAL;
    let mut buf = Vec::with_capacity(4096);
    let mut printed = 0u64;
    let mut unflushed = false;
    loop {
        if stopped(stop) {
            return Ok(Ended::Stopped);
        }
        if discover && Instant::now() >= next_discovery {
            next_discovery = Instant::now() + DISCOVERY_INTERVAL;
            assign_added_partitions(consumer, &args.topic, &mut known, notes);
        }
        // While records keep coming, they are written without flushing; once none is
        // waiting, the output is flushed (a terminal's is line-buffered anyway).
        let timeout = if unflushed { Duration::ZERO } else { POLL };
        match consumer.poll(timeout) {
            None => {
                if unflushed {
                    if let Err(e) = out.flush() {
                        return write_failed(e);
                    }
                    unflushed = false;
                }
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    return Err(TailError::Kafka(notes.redact(format!("{reason} ({code:?})"))));
                }
            }
            Some(Err(e)) => notes.warn(e.to_string()),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
                    .unwrap_or_default();
                let view = RecordView {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis(),
                    key: m.key(),
                    value: m.payload(),
                    headers,
                };
                buf.clear();
                render(args.format, args.headers, &view, &mut buf);
                if let Err(e) = out.write_all(&buf) {
                    return write_failed(e);
                }
                unflushed = true;
                if committing {
                    if let Err(e) = consumer.store_offset_from_message(&m) {
                        notes.warn(format!("storing the offset to commit: {e}"));
                    }
                }
                printed += 1;
                if args.max == Some(printed) {
                    return Ok(Ended::MaxRecords);
                }
            }
        }
    }
}

/// Adds partitions that appeared since `known` to the assignment, from their beginning.
fn assign_added_partitions(consumer: &BaseConsumer, topic: &str, known: &mut BTreeSet<i32>, notes: &mut Notes) {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(1)) else {
        return; // The next round will tell; errors of fetching show up in `poll`.
    };
    let Some(t) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return;
    };
    let mut added = TopicPartitionList::new();
    for p in t.partitions().iter().map(|p| p.id()).filter(|p| !known.contains(p)) {
        if added.add_partition_offset(topic, p, Offset::Beginning).is_ok() {
            notes.note(&format!(
                "partition {p} was added to {topic}; following it from its beginning"
            ));
        }
    }
    if added.count() == 0 {
        return;
    }
    match consumer.incremental_assign(&added) {
        Ok(()) => known.extend(added.elements().iter().map(|e| e.partition())),
        Err(e) => notes.warn(format!("following the added partitions: {e}")),
    }
}

/// A write error: a reader gone away is a normal end.
fn write_failed(e: io::Error) -> Result<Ended, TailError> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(Ended::OutputClosed)
    } else {
        Err(TailError::Output(e))
    }
}

/// Sleeps `d`, waking early if stopped.
fn sleep(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stopped(stop) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
}

/// Notes and warnings on stderr, with the values of secret properties taken out.
struct Notes {
    quiet: bool,
    secrets: Vec<String>,
    last_warning: Option<String>,
}

impl Notes {
    fn new(quiet: bool, config: &KafkaConfig) -> Notes {
        let secrets = config
            .properties
            .iter()
            // librdkafka echoes values only in configuration errors, handled apart; this is a
            // second line of defence (shorter values would blank out ordinary words).
            .filter(|(k, v)| is_secret(k) && v.len() >= 4)
            .map(|(_, v)| v.clone())
            .collect();
        Notes {
            quiet,
            secrets,
            last_warning: None,
        }
    }

    fn redact(&self, mut message: String) -> String {
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "<redacted>");
        }
        message
    }

    /// What is followed or waited for (not with `--quiet`).
    fn note(&self, message: &str) {
        if !self.quiet {
            let _ = writeln!(io::stderr(), "floe tail: {message}");
        }
    }

    /// A problem the client reported and retries (shown once until another one comes).
    fn warn(&mut self, message: String) {
        let message = self.redact(message);
        if self.last_warning.as_ref() != Some(&message) {
            let _ = writeln!(io::stderr(), "floe tail: warning: {message}");
            self.last_warning = Some(message);
        }
    }
}
