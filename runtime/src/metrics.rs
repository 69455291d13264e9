//! Metrics: named counters and gauges with labels, registered in one process-wide registry
//! and rendered in the Prometheus text format.
//!
//! A metric is an atomic behind an `Arc`: operators keep their handle and update it without
//! a lock or a lookup; the registry only holds the handles to list them. Registering the same
//! name and labels twice returns the same handle, so every copy of an operator (one per
//! subtask, or a source cloned per subtask) can share one count.
//!
//! ```
//! use floe_runtime::metrics::Registry;
//! let registry = Registry::new();
//! let dead = registry.counter("floe_dead_letters_total", "Records set aside", &[("source", "payments")]);
//! dead.add(2);
//! registry.counter("floe_dead_letters_total", "Records set aside", &[("source", "payments")]).inc();
//! assert_eq!(dead.get(), 3);
//! let text = registry.render_prometheus();
//! assert!(text.contains("floe_dead_letters_total{source=\"payments\"} 3"));
//! ```

pub mod checkpoints;
pub mod histogram;
pub mod net;
pub mod operators;
pub mod pressure;
pub mod server;

pub use histogram::{SinkLatency, Summary, SINK_LATENCY_METRIC};
pub use operators::{claim_job_attempt, operators, OperatorFigures};
pub use pressure::BackPressure;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// A count that only goes up (records, dead letters, failures).
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The atomic behind this counter (for code that shares a plain `Arc<AtomicU64>`).
    pub fn atomic(&self) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

/// A value that goes up and down (lag, queue length, last checkpoint id).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `d` (negative to subtract).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a metric is typed in the Prometheus text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Reads a value when the registry is listed; `None` leaves the series out for now.
pub type Reader = Arc<dyn Fn() -> Option<f64> + Send + Sync>;

#[derive(Clone)]
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    /// A value computed when listed (ratios, values in seconds, lags against the clock).
    Read(Kind, Reader),
    Summary(Summary),
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handle::Counter(c) => write!(f, "Counter({})", c.get()),
            Handle::Gauge(g) => write!(f, "Gauge({})", g.get()),
            Handle::Read(kind, read) => write!(f, "Read({kind:?}, {:?})", read()),
            Handle::Summary(s) => write!(f, "Summary(count {})", s.count()),
        }
    }
}

impl Handle {
    /// The value as a number (a summary's is its count), `None` when a reader has none.
    fn number(&self) -> Option<f64> {
        match self {
            Handle::Counter(c) => Some(c.get() as f64),
            Handle::Gauge(g) => Some(g.get() as f64),
            Handle::Read(_, read) => read(),
            Handle::Summary(s) => Some(s.count() as f64),
        }
    }

    fn value(&self) -> Option<i128> {
        match self {
            Handle::Counter(c) => Some(i128::from(c.get())),
            Handle::Gauge(g) => Some(i128::from(g.get())),
            Handle::Read(_, read) => read().map(|v| v.round() as i128),
            Handle::Summary(s) => Some(i128::from(s.count())),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Handle::Counter(_) | Handle::Read(Kind::Counter, _) => "counter",
            Handle::Gauge(_) | Handle::Read(Kind::Gauge, _) => "gauge",
            Handle::Summary(_) => "summary",
        }
    }
}

/// The labels of one metric, sorted by name.
type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Family {
    help: String,
    series: BTreeMap<Labels, Handle>,
}

/// One metric value, as listed by [`Registry::snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: i128,
}

/// A set of metrics; [`Registry::global`] is the process's.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

impl Registry {
    /// An empty registry (tests; jobs use [`Registry::global`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry that operators register in.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// The counter `name` with `labels`, created at zero on first use.
    ///
    /// # Panics
    /// If `name` is already registered as a gauge (a programming error, not input).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.handle(name, help, labels, || Handle::Counter(Counter::default())) {
            Handle::Counter(c) => c,
            other => panic!("metric {name} is a {}, not a counter", other.type_name()),
        }
    }

    /// The gauge `name` with `labels`, created at zero on first use.
    ///
    /// # Panics
    /// If `name` is already registered as a counter (a programming error, not input).
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.handle(name, help, labels, || Handle::Gauge(Gauge::default())) {
            Handle::Gauge(g) => g,
            other => panic!("metric {name} is a {}, not a gauge", other.type_name()),
        }
    }

    /// The summary `name` with `labels` (quantiles, count and sum of observations), created
    /// empty on first use.
    ///
    /// # Panics
    /// If `name` is already registered as another kind (a programming error, not input).
    pub fn summary(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Summary {
        match self.handle(name, help, labels, || Handle::Summary(Summary::new())) {
            Handle::Summary(s) => s,
            other => panic!("metric {name} is a {}, not a summary", other.type_name()),
        }
    }

    /// Lists a value that `read` computes each time the registry is listed (a ratio, a lag
    /// against the clock, nanoseconds shown in seconds), in place of any series of the same
    /// name and labels. `read` returning `None` leaves the series out for now.
    pub fn register_reader(&self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], read: Reader) {
        self.insert(name, help, labels, Handle::Read(kind, read));
    }

    /// Removes every series that has label `key` equal to `value` (e.g. a job's series when
    /// a new attempt of the job starts in the same process).
    pub fn remove_labelled(&self, key: &str, value: &str) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for f in families.values_mut() {
            f.series
                .retain(|labels, _| !labels.iter().any(|(k, v)| k == key && v == value));
        }
        families.retain(|_, f| !f.series.is_empty());
    }

    /// The current value of the series `name` with exactly `labels` (a summary's count),
    /// if it is listed and has a value.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = sorted(labels);
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families.get(name)?.series.get(&labels)?.number()
    }

    /// Lists `counter` (a handle an operator already has) as `name` with `labels`, in place
    /// of any series of the same name and labels (a job run again in the same process
    /// reports its own count).
    pub fn register_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], counter: &Counter) {
        self.insert(name, help, labels, Handle::Counter(counter.clone()));
    }

    /// Lists `gauge` (a handle an operator already has) as `name` with `labels`, in place of
    /// any series of the same name and labels.
    pub fn register_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], gauge: &Gauge) {
        self.insert(name, help, labels, Handle::Gauge(gauge.clone()));
    }

    fn insert(&self, name: &str, help: &str, labels: &[(&str, &str)], handle: Handle) {
        let labels = sorted(labels);
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        family.series.insert(labels, handle);
    }

    fn handle(&self, name: &str, help: &str, labels: &[(&str, &str)], new: impl FnOnce() -> Handle) -> Handle {
        let labels = sorted(labels);
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        family.series.entry(labels).or_insert_with(new).clone()
    }

    /// Every metric's current value, sorted by name then labels.
    pub fn snapshot(&self) -> Vec<Sample> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families
            .iter()
            .flat_map(|(name, f)| {
                f.series.iter().filter_map(move |(labels, h)| {
                    Some(Sample {
                        name: name.clone(),
                        labels: labels.clone(),
                        value: h.value()?,
                    })
                })
            })
            .collect()
    }

    /// The sum of metric `name` over the series whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> i128 {
        self.snapshot()
            .into_iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, f) in families.iter() {
            let Some(kind) = f.series.values().next().map(Handle::type_name) else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {}", escape(&f.help, false));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, h) in &f.series {
                match h {
                    Handle::Counter(c) => line(&mut out, name, labels, None, &c.get().to_string()),
                    Handle::Gauge(g) => line(&mut out, name, labels, None, &g.get().to_string()),
                    Handle::Read(_, read) => {
                        if let Some(v) = read().filter(|v| v.is_finite()) {
                            line(&mut out, name, labels, None, &v.to_string());
                        }
                    }
                    Handle::Summary(s) => {
                        let figures = s.figures(histogram::QUANTILES);
                        if figures.count > 0 {
                            for (q, v) in &figures.quantiles {
                                line(
                                    &mut out,
                                    name,
                                    labels,
                                    Some(("quantile", &q.to_string())),
                                    &v.to_string(),
                                );
                            }
                        }
                        line(&mut out, &format!("{name}_sum"), labels, None, &figures.sum.to_string());
                        line(
                            &mut out,
                            &format!("{name}_count"),
                            labels,
                            None,
                            &figures.count.to_string(),
                        );
                    }
                }
            }
        }
        out
    }
}

/// Writes one sample line: `name{labels,extra} value`.
fn line(out: &mut String, name: &str, labels: &Labels, extra: Option<(&str, &str)>, value: &str) {
    out.push_str(name);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let all = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(extra);
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v, true));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn sorted(labels: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    labels
}

/// Escapes a HELP text (backslash, newline) or a label value (also double quotes).
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_and_labels_share_one_handle_whatever_the_label_order() {
        let r = Registry::new();
        let a = r.counter("c", "h", &[("x", "1"), ("y", "2")]);
        let b = r.counter("c", "h", &[("y", "2"), ("x", "1")]);
        a.inc();
        b.add(4);
        assert_eq!(a.get(), 5);
        let other = r.counter("c", "h", &[("x", "2")]);
        other.inc();
        assert_eq!(r.sum("c", &[]), 6);
        assert_eq!(r.sum("c", &[("x", "1")]), 5);
        assert_eq!(r.snapshot().len(), 2);
        let replacement = Counter::default();
        r.register_counter("c", "h", &[("x", "2")], &replacement);
        other.inc();
        replacement.add(10);
        assert_eq!(
            r.sum("c", &[("x", "2")]),
            10,
            "the registered handle replaced the old one"
        );
        let g = Gauge::default();
        r.register_gauge("g", "h", &[], &g);
        g.set(-4);
        assert_eq!(r.sum("g", &[]), -4);
    }

    #[test]
    fn prometheus_text_has_help_type_and_escaped_labels() {
        let r = Registry::new();
        r.gauge("lag", "Records behind\nthe end", &[("topic", "a\"b\\c")])
            .set(-3);
        r.counter("n", "N", &[]).add(7);
        let text = r.render_prometheus();
        assert!(
            text.contains("# HELP lag Records behind\\nthe end\n# TYPE lag gauge\n"),
            "{text}"
        );
        assert!(text.contains("lag{topic=\"a\\\"b\\\\c\"} -3\n"), "{text}");
        assert!(text.contains("# TYPE n counter\nn 7\n"), "{text}");
    }

    #[test]
    fn readers_summaries_and_removal_render_as_prometheus_expects() {
        let r = Registry::new();
        let read: Reader = Arc::new(|| Some(0.25));
        r.register_reader("ratio", "R", Kind::Gauge, &[("job", "a")], read);
        r.register_reader("hidden", "H", Kind::Counter, &[("job", "a")], Arc::new(|| None));
        let s = r.summary("lat_ms", "L", &[("job", "b")]);
        let mut local = histogram::LocalHistogram::new();
        for v in [10, 20, 30, 40] {
            local.record(v);
        }
        s.merge(&mut local);
        let text = r.render_prometheus();
        assert!(text.contains("# TYPE ratio gauge\nratio{job=\"a\"} 0.25\n"), "{text}");
        assert!(text.contains("# TYPE hidden counter\n"), "{text}");
        assert!(
            !text.contains("hidden{"),
            "a reader without a value is left out: {text}"
        );
        assert!(text.contains("# TYPE lat_ms summary\n"), "{text}");
        assert!(text.contains("lat_ms{job=\"b\",quantile=\"0.5\"} 20\n"), "{text}");
        assert!(text.contains("lat_ms{job=\"b\",quantile=\"0.999\"} 40\n"), "{text}");
        assert!(
            text.contains("lat_ms_sum{job=\"b\"} 100\nlat_ms_count{job=\"b\"} 4\n"),
            "{text}"
        );
        assert_eq!(r.value("ratio", &[("job", "a")]), Some(0.25));
        assert_eq!(r.value("lat_ms", &[("job", "b")]), Some(4.0));
        r.remove_labelled("job", "a");
        let text = r.render_prometheus();
        assert!(!text.contains("ratio") && !text.contains("hidden"), "{text}");
        assert!(text.contains("lat_ms_count"), "{text}");
        let empty = r.summary("empty_ms", "E", &[]);
        assert_eq!(empty.count(), 0);
        let text = r.render_prometheus();
        assert!(!text.contains("empty_ms{quantile"), "no quantiles without data: {text}");
        assert!(text.contains("empty_ms_count 0\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "is a gauge")]
    fn a_name_keeps_its_kind() {
        let r = Registry::new();
        r.gauge("m", "", &[]);
        r.counter("m", "", &[]);
    }
}
