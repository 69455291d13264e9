//! Latency distributions: an hdrhistogram per sink subtask, recorded without a lock and
//! merged now and then into a shared [`Summary`] that the registry renders as a Prometheus
//! summary (quantiles, `_sum`, `_count`).
//!
//! ```
//! use floe_runtime::metrics::histogram::LocalHistogram;
//! use floe_runtime::metrics::Summary;
//! let shared = Summary::new();
//! let mut local = LocalHistogram::new();
//! for v in 1..=100 {
//!     local.record(v);
//! }
//! shared.merge(&mut local);
//! assert_eq!(shared.count(), 100);
//! assert_eq!(shared.sum(), 5050);
//! assert_eq!(shared.quantile(0.5), 50);
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;

use super::operators::claim_job_attempt;
use super::Registry;
use crate::element::{Timestamp, NO_TIMESTAMP};
use crate::operator::TaskInfo;

/// The quantiles a summary is rendered with.
pub const QUANTILES: &[f64] = &[0.5, 0.99, 0.999];

/// The name of the event-to-sink latency summary.
pub const SINK_LATENCY_METRIC: &str = "floe_event_to_sink_latency_ms";

/// The largest value kept exactly (a week in milliseconds); larger ones count as this.
const HIGHEST: u64 = 7 * 24 * 3_600_000;

/// How often (ms of processing time) a sink publishes what it recorded.
const PUBLISH_EVERY_MS: i64 = 100;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST, 3).expect("constant bounds that hdrhistogram accepts")
}

/// A histogram owned by one thread: recording is a plain increment.
#[derive(Debug)]
pub struct LocalHistogram {
    hist: Histogram<u64>,
    sum: u64,
}

impl Default for LocalHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalHistogram {
    /// An empty histogram of values from 1 to a week's worth of milliseconds (3 significant
    /// digits); 0 is kept as 0, larger values as the largest.
    pub fn new() -> Self {
        LocalHistogram {
            hist: histogram(),
            sum: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.hist.saturating_record(v.min(HIGHEST));
        self.sum = self.sum.saturating_add(v);
    }

    /// Number of values recorded since the last merge.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether nothing was recorded since the last merge.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }
}

/// What a summary holds at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryFigures {
    /// Each asked quantile with its value.
    pub quantiles: Vec<(f64, u64)>,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: u64,
}

/// A distribution shared between the threads that merge into it and the registry that
/// renders it.
#[derive(Clone, Debug)]
pub struct Summary(Arc<Mutex<LocalHistogram>>);

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Summary(Arc::new(Mutex::new(LocalHistogram::new())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalHistogram> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds what `local` recorded and empties it.
    pub fn merge(&self, local: &mut LocalHistogram) {
        if local.is_empty() {
            return;
        }
        let mut shared = self.lock();
        // Same bounds on both sides: adding cannot fail; if it ever did, the values are
        // dropped rather than the job failing.
        let _ = shared.hist.add(&local.hist);
        shared.sum = shared.sum.saturating_add(local.sum);
        drop(shared);
        local.hist.reset();
        local.sum = 0;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.lock().hist.len()
    }

    /// Sum of the observations.
    pub fn sum(&self) -> u64 {
        self.lock().sum
    }

    /// The value at quantile `q` (0..=1), within 0.1 %; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        self.lock().hist.value_at_quantile(q)
    }

    /// Count, sum and the `quantiles` asked, read at once.
    pub fn figures(&self, quantiles: &[f64]) -> SummaryFigures {
        let s = self.lock();
        SummaryFigures {
            quantiles: quantiles.iter().map(|&q| (q, s.hist.value_at_quantile(q))).collect(),
            count: s.hist.len(),
            sum: s.sum,
        }
    }
}

/// Records, at a sink subtask, how long after its event time each record arrived:
/// processing time minus event timestamp, in ms (records without a timestamp are skipped).
/// Recording is task-local; what was recorded is merged into the shared
/// `floe_event_to_sink_latency_ms{job,operator}` summary every 100 ms and when dropped.
///
/// ```
/// use floe_runtime::metrics::{Registry, SinkLatency, SINK_LATENCY_METRIC};
/// use floe_runtime::TaskInfo;
/// let info = TaskInfo::new("latency-doc", "sink", 0, 1, 128);
/// let mut latency = SinkLatency::new(&info);
/// latency.record_batch([1_000, 1_500, floe_runtime::NO_TIMESTAMP].into_iter(), 2_000);
/// drop(latency);
/// let labels = [("job", "latency-doc"), ("operator", "sink")];
/// assert_eq!(Registry::global().value(SINK_LATENCY_METRIC, &labels), Some(2.0));
/// ```
#[derive(Debug)]
pub struct SinkLatency {
    local: LocalHistogram,
    shared: Summary,
    last_publish: Timestamp,
}

impl SinkLatency {
    /// A recorder for the sink subtask `info`, in the process's registry.
    pub fn new(info: &TaskInfo) -> Self {
        claim_job_attempt(&info.job_name, info.attempt);
        let shared = Registry::global().summary(
            SINK_LATENCY_METRIC,
            "Processing time at the sink minus the event time of the record, in ms",
            &[("job", &info.job_name), ("operator", &info.operator_name)],
        );
        SinkLatency {
            local: LocalHistogram::new(),
            shared,
            last_publish: Timestamp::MIN,
        }
    }

    /// Records the records of a batch by their event `timestamps`, at processing time `now`.
    pub fn record_batch(&mut self, timestamps: impl Iterator<Item = Timestamp>, now: Timestamp) {
        for t in timestamps {
            if t != NO_TIMESTAMP {
                self.local.record(now.saturating_sub(t).max(0) as u64);
            }
        }
        if now.saturating_sub(self.last_publish) >= PUBLISH_EVERY_MS {
            self.publish();
            self.last_publish = now;
        }
    }

    /// Merges what was recorded into the shared summary now.
    pub fn publish(&mut self) {
        self.shared.merge(&mut self.local);
    }
}

impl Drop for SinkLatency {
    fn drop(&mut self) {
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The oracle: the smallest value with at least `q` of the values at or below it.
    fn oracle(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    proptest! {
        #[test]
        fn quantiles_match_a_sorted_vector_within_a_tenth_of_a_percent(
            values in proptest::collection::vec(0u64..5_000_000, 1..2_000),
            split in 0usize..2_000,
        ) {
            let shared = Summary::new();
            // Two subtasks merging into one summary.
            let (a, b) = values.split_at(split.min(values.len()));
            for part in [a, b] {
                let mut local = LocalHistogram::new();
                for &v in part {
                    local.record(v);
                }
                shared.merge(&mut local);
                prop_assert!(local.is_empty());
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            prop_assert_eq!(shared.count(), values.len() as u64);
            prop_assert_eq!(shared.sum(), values.iter().sum::<u64>());
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let want = oracle(&sorted, q) as f64;
                let got = shared.quantile(q) as f64;
                prop_assert!((got - want).abs() <= want * 0.001 + 1.0, "q {}: got {} want {}", q, got, want);
            }
        }
    }

    #[test]
    fn sink_latency_skips_untimed_records_and_clamps_early_ones() {
        let info = TaskInfo::new("histogram-unit", "sink", 0, 1, 128);
        let mut l = SinkLatency::new(&info);
        l.record_batch([NO_TIMESTAMP, 100, 900, 1_200].into_iter(), 1_000);
        // Published on the first batch.
        assert_eq!((l.shared.count(), l.shared.sum()), (3, 900 + 100));
        l.record_batch([950].into_iter(), 1_050);
        assert_eq!(l.shared.count(), 3, "within 100 ms: not yet published");
        let shared = l.shared.clone();
        drop(l);
        assert_eq!((shared.count(), shared.quantile(1.0)), (4, 900));
    }
}
