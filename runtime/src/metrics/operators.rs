//! Per operator subtask figures: records in and out, time blocked on full output channels
//! and its recent share (backpressure), the input watermark and its lag behind the clock.
//!
//! Each running subtask (each link of a chain too) has one [`SubtaskMetrics`], created when
//! its task starts and listed in the process's registry as
//! `floe_records_in_total`, `floe_records_out_total`, `floe_output_blocked_seconds_total`,
//! `floe_backpressure_ratio`, `floe_watermark_ms` and `floe_watermark_lag_ms`, labelled
//! `job`, `operator` and `subtask`. The task updates plain atomics once per batch.
//!
//! A job's series stay listed after its tasks end (a last scrape sees the final counts) and
//! are dropped when a newer attempt of a job of the same name starts in this process, so that
//! a restarted job counts from zero rather than on top of its previous run. [`operators`]
//! lists only the subtasks running now.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::pressure::BackPressure;
use super::{Counter, Kind, Registry};
use crate::element::{Timestamp, MAX_WATERMARK, MIN_WATERMARK};
use crate::operator::TaskInfo;
use crate::time::{Clock, SystemClock};

/// One operator subtask's figures, as [`operators`] lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorFigures {
    /// The job's name.
    pub job: String,
    /// The operator's node in the job graph.
    pub node: usize,
    /// The operator's name.
    pub operator: String,
    /// The subtask index, from 0.
    pub subtask: usize,
    /// Records the operator received (0 for a source).
    pub records_in: u64,
    /// Records the operator emitted, main and side outputs.
    pub records_out: u64,
    /// Seconds its task spent blocked on full output channels.
    pub blocked_seconds: f64,
    /// The share (0 to 1) of the last second or so its task spent blocked.
    pub backpressure: f64,
    /// The operator's current input watermark (a source's: the one it emitted), if any.
    pub watermark: Option<i64>,
}

/// The live figures of one operator subtask.
#[derive(Debug)]
pub struct SubtaskMetrics {
    job: String,
    node: usize,
    operator: String,
    subtask: usize,
    records_in: Counter,
    records_out: Counter,
    pressure: Arc<BackPressure>,
    watermark: AtomicI64,
}

impl SubtaskMetrics {
    fn watermark(&self) -> Option<Timestamp> {
        Some(self.watermark.load(Ordering::Relaxed)).filter(|w| *w != MIN_WATERMARK)
    }

    fn figures(&self) -> OperatorFigures {
        OperatorFigures {
            job: self.job.clone(),
            node: self.node,
            operator: self.operator.clone(),
            subtask: self.subtask,
            records_in: self.records_in.get(),
            records_out: self.records_out.get(),
            blocked_seconds: self.pressure.blocked_seconds(),
            backpressure: self.pressure.ratio(),
            watermark: self.watermark(),
        }
    }
}

/// A task's hold on one subtask's metrics: updates them, and takes the subtask off the
/// live list when dropped (when the task ends).
#[derive(Debug)]
pub struct SubtaskHandle {
    shared: Arc<SubtaskMetrics>,
    id: u64,
    source: bool,
}

impl SubtaskHandle {
    /// Counts `n` records received.
    pub fn records_in(&self, n: usize) {
        self.shared.records_in.add(n as u64);
    }

    /// Counts `n` records emitted.
    pub fn records_out(&self, n: usize) {
        self.shared.records_out.add(n as u64);
    }

    /// The operator's watermark is now `wm`.
    pub fn watermark(&self, wm: Timestamp) {
        self.shared.watermark.store(wm, Ordering::Relaxed);
    }

    /// The subtask emitted watermark `wm`: a source's watermark is the one it emits.
    pub fn emitted_watermark(&self, wm: Timestamp) {
        if self.source {
            self.watermark(wm);
        }
    }

    /// The task's backpressure, for its edge writers.
    pub fn pressure(&self) -> &Arc<BackPressure> {
        &self.shared.pressure
    }
}

impl Drop for SubtaskHandle {
    fn drop(&mut self) {
        live().remove(&self.id);
    }
}

type Live = BTreeMap<u64, Arc<SubtaskMetrics>>;

fn live() -> std::sync::MutexGuard<'static, Live> {
    static LIVE: OnceLock<Mutex<Live>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Records that attempt `attempt` of job `job` runs in this process: the first time a newer
/// attempt than the last one seen registers, every series labelled `job="<job>"` is dropped
/// from the process's registry (the new attempt counts from zero). Every registration of a
/// job-labelled metric calls this first.
pub fn claim_job_attempt(job: &str, attempt: u64) {
    static ATTEMPTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut attempts = ATTEMPTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match attempts.get(job) {
        Some(&seen) if seen >= attempt => {}
        Some(_) => {
            Registry::global().remove_labelled("job", job);
            attempts.insert(job.to_string(), attempt);
        }
        None => {
            attempts.insert(job.to_string(), attempt);
        }
    }
}

/// Registers the subtask `info` of a task whose edge writers report to `pressure`; a source's
/// watermark is the one it emits (`source`), any other operator's the one it receives.
pub fn register(info: &TaskInfo, pressure: Arc<BackPressure>, source: bool) -> SubtaskHandle {
    static IDS: AtomicU64 = AtomicU64::new(0);
    claim_job_attempt(&info.job_name, info.attempt);
    let shared = Arc::new(SubtaskMetrics {
        job: info.job_name.clone(),
        node: info.node,
        operator: info.operator_name.clone(),
        subtask: info.subtask_index,
        records_in: Counter::default(),
        records_out: Counter::default(),
        pressure,
        watermark: AtomicI64::new(MIN_WATERMARK),
    });
    let subtask = info.subtask_index.to_string();
    let labels = [
        ("job", info.job_name.as_str()),
        ("operator", info.operator_name.as_str()),
        ("subtask", subtask.as_str()),
    ];
    let r = Registry::global();
    r.register_counter(
        "floe_records_in_total",
        "Records an operator subtask received",
        &labels,
        &shared.records_in,
    );
    r.register_counter(
        "floe_records_out_total",
        "Records an operator subtask emitted (main and side outputs)",
        &labels,
        &shared.records_out,
    );
    let s = shared.clone();
    r.register_reader(
        "floe_output_blocked_seconds_total",
        "Seconds the subtask's task spent blocked sending to full output channels",
        Kind::Counter,
        &labels,
        Arc::new(move || Some(s.pressure.blocked_seconds())),
    );
    let s = shared.clone();
    r.register_reader(
        "floe_backpressure_ratio",
        "Share of the last second or so the subtask's task spent blocked on full output channels",
        Kind::Gauge,
        &labels,
        Arc::new(move || Some(s.pressure.ratio())),
    );
    let s = shared.clone();
    r.register_reader(
        "floe_watermark_ms",
        "The operator subtask's current input watermark (ms since the epoch)",
        Kind::Gauge,
        &labels,
        Arc::new(move || s.watermark().map(|w| w as f64)),
    );
    let s = shared.clone();
    r.register_reader(
        "floe_watermark_lag_ms",
        "Processing time now minus the subtask's watermark, in ms",
        Kind::Gauge,
        &labels,
        Arc::new(move || {
            let wm = s.watermark().filter(|w| *w != MAX_WATERMARK)?;
            Some(SystemClock.now().saturating_sub(wm) as f64)
        }),
    );
    let id = IDS.fetch_add(1, Ordering::Relaxed);
    live().insert(id, shared.clone());
    SubtaskHandle { shared, id, source }
}

/// The figures of every operator subtask running in this process now, by job, node and
/// subtask (rates come from the differences between two calls).
pub fn operators() -> Vec<OperatorFigures> {
    let subtasks: Vec<Arc<SubtaskMetrics>> = live().values().cloned().collect();
    let mut figures: Vec<OperatorFigures> = subtasks.iter().map(|s| s.figures()).collect();
    figures.sort_by(|a, b| (&a.job, a.node, a.subtask).cmp(&(&b.job, b.node, b.subtask)));
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(job: &str, attempt: u64) -> TaskInfo {
        let mut i = TaskInfo::new(job, "map", 1, 2, 128);
        i.node = 3;
        i.attempt = attempt;
        i
    }

    fn ours(job: &str) -> Vec<OperatorFigures> {
        operators().into_iter().filter(|f| f.job == job).collect()
    }

    #[test]
    fn a_subtask_is_listed_while_its_handle_lives_and_counts_in_its_series() {
        let job = "operators-unit-live";
        let h = register(&info(job, 1), Arc::new(BackPressure::new()), false);
        h.records_in(10);
        h.records_out(7);
        h.watermark(1_000);
        let figures = ours(job);
        assert_eq!(figures.len(), 1);
        let f = &figures[0];
        assert_eq!((f.node, f.subtask, f.operator.as_str()), (3, 1, "map"));
        assert_eq!((f.records_in, f.records_out, f.watermark), (10, 7, Some(1_000)));
        let labels = [("job", job), ("operator", "map"), ("subtask", "1")];
        let r = Registry::global();
        assert_eq!(r.value("floe_records_in_total", &labels), Some(10.0));
        assert_eq!(r.value("floe_watermark_ms", &labels), Some(1_000.0));
        let lag = r.value("floe_watermark_lag_ms", &labels).unwrap();
        assert!(lag > 1.0e12, "now minus 1 s after the epoch: {lag}");
        assert_eq!(r.value("floe_backpressure_ratio", &labels), Some(0.0));
        drop(h);
        assert!(ours(job).is_empty(), "gone from the live list");
        assert_eq!(
            r.value("floe_records_in_total", &labels),
            Some(10.0),
            "the series stays for a last scrape"
        );
    }

    #[test]
    fn a_newer_attempt_drops_the_older_series_and_an_older_one_does_not() {
        let job = "operators-unit-attempts";
        let labels = [("job", job), ("operator", "map"), ("subtask", "1")];
        let r = Registry::global();
        let first = register(&info(job, 5), Arc::new(BackPressure::new()), false);
        first.records_in(3);
        r.counter("floe_checkpoints_completed_total", "", &[("job", job)]).inc();
        let second = register(&info(job, 6), Arc::new(BackPressure::new()), false);
        assert_eq!(r.value("floe_records_in_total", &labels), Some(0.0));
        assert_eq!(r.value("floe_checkpoints_completed_total", &[("job", job)]), None);
        second.records_in(2);
        let _straggler = register(&info(job, 4), Arc::new(BackPressure::new()), false);
        let _sibling = register(&info(job, 6), Arc::new(BackPressure::new()), false);
        assert_eq!(ours(job).len(), 4, "every live subtask is listed");
        assert!(r.value("floe_watermark_ms", &labels).is_none(), "no watermark yet");
    }
}
