//! The builder of [`KafkaSource`]: settings with defaults, checked once in `build`.

use std::sync::Arc;
use std::time::Duration;

use floe_runtime::metrics::Counter;
use floe_runtime::{Data, Result, RuntimeError, Timestamp};
use regex::Regex;

use super::client::Topics;
use super::{Deserializer, KafkaSource, OffsetOutOfRange, StartPosition};
use crate::kafka::KafkaConfig;

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where record timestamps come from.
pub enum TimestampsFrom<T> {
    /// The Kafka record's timestamp (create time or log-append time), the default. A record
    /// without one gets [`NO_TIMESTAMP`](floe_runtime::NO_TIMESTAMP) and does not move the watermark.
    Kafka,
    /// A function of the deserialized value (ms since the epoch).
    Field(Arc<dyn Fn(&T) -> Timestamp + Send + Sync>),
}

impl<T> TimestampsFrom<T> {
    /// Timestamps taken from the value by `f`.
    pub fn field(f: impl Fn(&T) -> Timestamp + Send + Sync + 'static) -> Self {
        TimestampsFrom::Field(Arc::new(f))
    }
}

impl<T> Clone for TimestampsFrom<T> {
    fn clone(&self) -> Self {
        match self {
            TimestampsFrom::Kafka => TimestampsFrom::Kafka,
            TimestampsFrom::Field(f) => TimestampsFrom::Field(f.clone()),
        }
    }
}

/// A built source's settings, shared by the copies of every subtask.
pub(super) struct Settings<T> {
    pub(super) config: KafkaConfig,
    pub(super) topics: Topics,
    pub(super) deserializer: Arc<dyn Deserializer<T>>,
    pub(super) start: StartPosition,
    pub(super) group_id: Option<String>,
    pub(super) timestamps: TimestampsFrom<T>,
    pub(super) bound_ms: i64,
    pub(super) idle_ms: Option<i64>,
    pub(super) discovery_interval: Option<Duration>,
    pub(super) bounded: bool,
    pub(super) request_timeout: Duration,
    pub(super) out_of_range: OffsetOutOfRange,
}

/// Builds a [`KafkaSource`]; see [`KafkaSource::builder`].
pub struct KafkaSourceBuilder<T> {
    config: KafkaConfig,
    topics: Vec<String>,
    pattern: Option<String>,
    deserializer: Option<Arc<dyn Deserializer<T>>>,
    start: StartPosition,
    group_id: Option<String>,
    timestamps: TimestampsFrom<T>,
    max_out_of_orderness: Duration,
    idle_timeout: Option<Duration>,
    discovery_interval: Duration,
    dead_letter_tag: Option<u64>,
    bounded: bool,
    request_timeout: Duration,
    out_of_range: Option<OffsetOutOfRange>,
}

impl<T: Data> KafkaSourceBuilder<T> {
    /// Reads these topics (replacing any set before).
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Reads this topic too.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Reads every topic whose whole name matches this regular expression, including
    /// topics created while the job runs (found at each discovery). Topics whose names
    /// start with `__` (the broker's own) match only a pattern that starts with `__`.
    pub fn topic_pattern(mut self, regex: impl Into<String>) -> Self {
        self.pattern = Some(regex.into());
        self
    }

    /// How records become values ([`Json`](super::Json), [`Utf8`](super::Utf8), [`Bytes`](super::Bytes),
    /// [`WithMetadata`](super::WithMetadata), or a closure over [`KafkaMessage`](super::KafkaMessage)).
    pub fn deserializer(mut self, deserializer: impl Deserializer<T>) -> Self {
        self.deserializer = Some(Arc::new(deserializer));
        self
    }

    /// Where to start without a checkpoint (default [`StartPosition::Earliest`]).
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// The consumer group: offsets of completed checkpoints are committed to it, and
    /// [`StartPosition::GroupOffsets`] reads them. Same as the `group.id` property.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Where record timestamps come from (default [`TimestampsFrom::Kafka`]).
    pub fn timestamps(mut self, timestamps: TimestampsFrom<T>) -> Self {
        self.timestamps = timestamps;
        self
    }

    /// How far a record may be behind the newest one of its partition and still be on
    /// time: each partition's watermark is its largest timestamp minus this, minus 1 ms
    /// (default 0).
    pub fn max_out_of_orderness(mut self, bound: Duration) -> Self {
        self.max_out_of_orderness = bound;
        self
    }

    /// A partition without records for this long (processing time) stops holding back the
    /// watermark until it has records again, provided it has nothing left to read (no lag in
    /// the consumer's last statistics; records waiting at a slow broker keep it active); when
    /// all are idle, so is the subtask (default: never idle).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// How often to look for new partitions and topics (default 30 s; zero: only at start).
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.discovery_interval = interval;
        self
    }

    /// Emits records that fail to deserialize as `Record<DeadLetter>` on the side output
    /// `tag` (e.g. `OutputTag::<DeadLetter>::new("dead").id()`); without it they are
    /// logged. They are counted either way ([`KafkaSource::dead_letters`]).
    pub fn dead_letters(mut self, tag: u64) -> Self {
        self.dead_letter_tag = Some(tag);
        self
    }

    /// Reads only what the partitions hold when the source starts, then finishes (for
    /// tests and batch-like runs); no discovery while running.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// How long one metadata or offset request to the brokers may block the task
    /// (default 5 s); it is retried later if it times out.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// What to do when a partition's next offset is no longer in the partition (its
    /// records were deleted before they were read) or past its end (default:
    /// [`OffsetOutOfRange::Fail`], or what an `auto.offset.reset` property says). Skipped
    /// records are counted in `floe_kafka_records_lost_total` and logged.
    pub fn on_offset_out_of_range(mut self, policy: OffsetOutOfRange) -> Self {
        self.out_of_range = Some(policy);
        self
    }

    /// The source, or what to change in its configuration.
    pub fn build(mut self) -> Result<KafkaSource<T>> {
        let bad = |msg: String| Err(RuntimeError::InvalidGraph(format!("Kafka source: {msg}")));
        if self.config.brokers.trim().is_empty() {
            return bad("no bootstrap servers: pass `host:port` to KafkaConfig::new".into());
        }
        let topics = match (self.topics.is_empty(), self.pattern) {
            (true, None) => return bad("no topics: call .topics([..]) or .topic_pattern(regex)".into()),
            (false, Some(_)) => return bad("both topics and a topic pattern: set only one of them".into()),
            (false, None) => {
                if let Some(t) = self
                    .topics
                    .iter()
                    .find(|t| t.trim().is_empty() || t.trim() != t.as_str())
                {
                    return bad(format!("topic name `{t}` is empty or has surrounding spaces"));
                }
                let mut names = self.topics;
                names.sort();
                names.dedup();
                Topics::Names(names)
            }
            (true, Some(p)) => match Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Topics::Pattern(re),
                Err(e) => return bad(format!("topic pattern `{p}` is not a valid regular expression: {e}")),
            },
        };
        let Some(deserializer) = self.deserializer else {
            return bad("no deserializer: call .deserializer(Json::<T>::new()) or another".into());
        };
        let group_id = self
            .group_id
            .or_else(|| self.config.properties.get("group.id").cloned());
        if group_id.as_deref().is_some_and(|g| g.trim().is_empty()) {
            return bad("the group id is empty".into());
        }
        match &self.start {
            StartPosition::GroupOffsets { .. } if group_id.is_none() => {
                return bad("StartPosition::GroupOffsets needs a consumer group: call .group_id(..)".into())
            }
            StartPosition::Timestamp(ts) if *ts < 0 => {
                return bad(format!("start timestamp {ts} is negative: give ms since the epoch"))
            }
            StartPosition::Explicit(map) => {
                if let Some(((t, p), o)) = map.iter().find(|((_, p), o)| **o < 0 || *p < 0) {
                    return bad(format!("explicit start offset {o} for {t}/{p} is negative"));
                }
            }
            _ => {}
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return bad("the idle timeout is zero: give a positive duration or leave it unset".into());
        }
        if self.request_timeout.is_zero() {
            return bad("the request timeout is zero: give a positive duration".into());
        }
        // librdkafka must report an offset out of range rather than jump: the property
        // becomes the policy.
        let reset = self.config.properties.remove("auto.offset.reset");
        let out_of_range = match (self.out_of_range, reset) {
            (Some(policy), _) => policy,
            (None, None) => OffsetOutOfRange::Fail,
            (None, Some(v)) => match OffsetOutOfRange::from_property(&v) {
                Some(policy) => policy,
                None => {
                    return bad(format!(
                        "auto.offset.reset = `{v}` is not one of earliest, latest, error; or choose                          .on_offset_out_of_range(..) instead"
                    ))
                }
            },
        };
        let discovery_interval =
            (!self.discovery_interval.is_zero() && !self.bounded).then_some(self.discovery_interval);
        Ok(KafkaSource {
            settings: Arc::new(Settings {
                config: self.config,
                topics,
                deserializer,
                start: self.start,
                group_id,
                timestamps: self.timestamps,
                bound_ms: millis(self.max_out_of_orderness),
                idle_ms: self.idle_timeout.map(|d| millis(d).max(1)),
                discovery_interval,
                bounded: self.bounded,
                request_timeout: self.request_timeout,
                out_of_range,
            }),
            dead_letter_tag: self.dead_letter_tag,
            dead_letters: Counter::default(),
            records_read: Counter::default(),
            records_lost: Counter::default(),
            run: None,
        })
    }
}

impl<T: Data> KafkaSource<T> {
    /// A builder reading from the brokers of `config`.
    pub fn builder(config: KafkaConfig) -> KafkaSourceBuilder<T> {
        KafkaSourceBuilder {
            config,
            topics: Vec::new(),
            pattern: None,
            deserializer: None,
            start: StartPosition::Earliest,
            group_id: None,
            timestamps: TimestampsFrom::Kafka,
            max_out_of_orderness: Duration::ZERO,
            idle_timeout: None,
            discovery_interval: Duration::from_secs(30),
            dead_letter_tag: None,
            bounded: false,
            request_timeout: Duration::from_secs(5),
            out_of_range: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::source::{OffsetReset, Utf8};

    fn builder() -> KafkaSourceBuilder<String> {
        KafkaSource::builder(KafkaConfig::new("127.0.0.1:1")).deserializer(Utf8)
    }

    fn error(b: KafkaSourceBuilder<String>) -> String {
        match b.build() {
            Ok(_) => panic!("expected a configuration error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_configurations_say_what_to_change() {
        assert!(error(builder()).contains("no topics"));
        assert!(error(builder().topics(["a"]).topic_pattern("b.*")).contains("only one"));
        assert!(error(builder().topic_pattern("(")).contains("not a valid regular expression"));
        assert!(error(builder().topics([""])).contains("empty"));
        assert!(error(builder().topics(["a"]).start(StartPosition::GroupOffsets {
            fallback: OffsetReset::Earliest
        }))
        .contains(".group_id"));
        assert!(error(builder().topics(["a"]).start(StartPosition::Timestamp(-5))).contains("negative"));
        assert!(error(builder().topics(["a"]).idle_timeout(Duration::ZERO)).contains("idle timeout"));
        let no_deser = KafkaSource::<String>::builder(KafkaConfig::new("b:1")).topics(["a"]);
        assert!(error(no_deser).contains("no deserializer"));
        let no_brokers = KafkaSource::<String>::builder(KafkaConfig::new(" "))
            .topics(["a"])
            .deserializer(Utf8);
        assert!(error(no_brokers).contains("bootstrap"));
        assert!(builder().topics(["a"]).build().is_ok());
        let with_group = KafkaSource::<String>::builder(KafkaConfig::new("b:1").set("group.id", "g"))
            .topics(["a"])
            .deserializer(Utf8)
            .start(StartPosition::GroupOffsets {
                fallback: OffsetReset::Latest,
            });
        assert!(with_group.build().is_ok(), "group.id as a property counts");
        let reset = |v: &str| {
            KafkaSource::<String>::builder(KafkaConfig::new("b:1").set("auto.offset.reset", v))
                .topics(["a"])
                .deserializer(Utf8)
        };
        assert!(error(reset("sometimes")).contains("auto.offset.reset"));
    }

    #[test]
    fn the_offset_out_of_range_policy_is_the_builders_or_the_propertys_and_librdkafka_never_resets() {
        let policy = |b: KafkaSourceBuilder<String>| {
            let source = b.build().unwrap();
            assert!(
                !source.settings.config.properties.contains_key("auto.offset.reset"),
                "librdkafka is left to report, not to reset"
            );
            source.settings.out_of_range
        };
        let with = |v: &str| {
            KafkaSource::<String>::builder(KafkaConfig::new("b:1").set("auto.offset.reset", v))
                .topics(["a"])
                .deserializer(Utf8)
        };
        assert_eq!(policy(builder().topics(["a"])), OffsetOutOfRange::Fail);
        assert_eq!(policy(with("earliest")), OffsetOutOfRange::SkipToEarliest);
        assert_eq!(policy(with("latest")), OffsetOutOfRange::SkipToLatest);
        assert_eq!(
            policy(with("earliest").on_offset_out_of_range(OffsetOutOfRange::Fail)),
            OffsetOutOfRange::Fail,
            "the builder's choice wins"
        );
    }

    #[test]
    fn patterns_match_whole_names_and_skip_internal_topics() {
        let Topics::Pattern(re) = builder()
            .topic_pattern("pay.*")
            .build()
            .unwrap()
            .settings
            .topics
            .clone()
        else {
            panic!("a pattern")
        };
        let t = Topics::Pattern(re);
        assert!(t.selects("payments") && !t.selects("xpayments"));
        let all = Topics::Pattern(Regex::new("^(?:.*)$").unwrap());
        assert!(all.selects("a") && !all.selects("__consumer_offsets"));
        let internal = Topics::Pattern(Regex::new("^(?:__.*)$").unwrap());
        assert!(internal.selects("__consumer_offsets"));
    }
}
