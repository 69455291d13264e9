//! Figures: the per-operator merge of a job's workers, and the job manager's Prometheus
//! text (its own figures plus each running worker's registry, labelled by job and worker).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::protocol::{JobState, OperatorMetrics};

use super::cluster::Cluster;

/// Merges the operator figures of several workers by node: sums of records and rates, the
/// highest backpressure, the lowest watermark.
pub(crate) fn merge_operators(lists: &[&[OperatorMetrics]]) -> Vec<OperatorMetrics> {
    let mut merged: BTreeMap<usize, OperatorMetrics> = BTreeMap::new();
    for op in lists.iter().flat_map(|l| l.iter()) {
        match merged.get_mut(&op.node) {
            None => {
                merged.insert(op.node, op.clone());
            }
            Some(m) => {
                m.records_in = m.records_in.saturating_add(op.records_in);
                m.records_out = m.records_out.saturating_add(op.records_out);
                m.records_in_per_sec += op.records_in_per_sec;
                m.records_out_per_sec += op.records_out_per_sec;
                m.backpressure = m.backpressure.max(op.backpressure);
                m.watermark = match (m.watermark, op.watermark) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    merged.into_values().collect()
}

const STATES: [JobState; 9] = [
    JobState::Scheduled,
    JobState::Deploying,
    JobState::Running,
    JobState::Restarting,
    JobState::Stopping,
    JobState::Finished,
    JobState::Cancelled,
    JobState::Stopped,
    JobState::Failed,
];

/// The Prometheus text of `GET /metrics`.
pub(crate) fn render(cluster: &Cluster) -> String {
    let mut out = Families::default();
    let jobs = out.family("floe_jobs", "gauge", "Jobs by state.");
    for state in STATES {
        let n = cluster.jobs.values().filter(|j| j.state == state).count();
        jobs.push(format!("floe_jobs{{state=\"{}\"}} {n}", state.as_str()));
    }
    let tms = out.family("floe_taskmanagers", "gauge", "Registered task managers.");
    tms.push(format!("floe_taskmanagers {}", cluster.tms.len()));
    let total: usize = cluster.tms.values().map(|t| t.slots).sum();
    let used: usize = cluster.tms.keys().map(|t| cluster.slots_used(t)).sum();
    let slots = out.family("floe_taskmanager_slots", "gauge", "Task manager slots, free or used.");
    slots.push(format!(
        "floe_taskmanager_slots{{state=\"free\"}} {}",
        total.saturating_sub(used)
    ));
    slots.push(format!("floe_taskmanager_slots{{state=\"used\"}} {used}"));

    let per_job: [(&str, &str, &str); 5] = [
        ("floe_job_restarts_total", "counter", "Restarts after failures."),
        ("floe_checkpoints_completed_total", "counter", "Checkpoints completed."),
        ("floe_checkpoints_failed_total", "counter", "Checkpoints failed."),
        (
            "floe_checkpoint_duration_ms",
            "gauge",
            "Duration of the last completed checkpoint.",
        ),
        (
            "floe_checkpoint_size_bytes",
            "gauge",
            "State size of the last completed checkpoint.",
        ),
    ];
    for (name, kind, help) in per_job {
        let family = out.family(name, kind, help);
        for job in cluster.jobs.values() {
            let last = job.checkpoints.iter().rev().find(|c| c.failure.is_none());
            let value = match name {
                "floe_job_restarts_total" => Some(u64::from(job.restarts)),
                "floe_checkpoints_completed_total" => Some(job.checkpoints_completed),
                "floe_checkpoints_failed_total" => Some(job.checkpoints_failed),
                "floe_checkpoint_duration_ms" => last.map(|c| c.duration_ms),
                _ => last.map(|c| c.bytes),
            };
            if let Some(value) = value {
                family.push(format!("{name}{{job=\"{}\"}} {value}", job.id));
            }
        }
    }

    for attempt in cluster.attempts.values().filter(|a| !a.over) {
        for (w, worker) in attempt.workers.iter().enumerate() {
            if let Some(m) = &worker.metrics {
                let labels = format!("job=\"{}\",worker=\"{w}\"", attempt.job);
                out.absorb(&m.prometheus, &labels);
            }
        }
    }
    out.finish()
}

/// Metric families in first-seen order, so that every family's samples stay together.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    by_name: BTreeMap<String, Family>,
}

#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

impl Families {
    fn entry(&mut self, name: &str) -> &mut Family {
        if !self.by_name.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.by_name.entry(name.to_string()).or_default()
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Vec<String> {
        let family = self.entry(name);
        family.help.get_or_insert_with(|| help.to_string());
        family.kind.get_or_insert_with(|| kind.to_string());
        &mut family.samples
    }

    /// Adds a worker's registry, with `labels` added to every sample.
    fn absorb(&mut self, text: &str, labels: &str) {
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                let is_help = line.starts_with("# HELP");
                let family = self.entry(name);
                let slot = if is_help { &mut family.help } else { &mut family.kind };
                slot.get_or_insert_with(|| value.to_string());
                current = Some(name.to_string());
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            let rest = &line[name_end..];
            let labelled = match rest.strip_prefix('{') {
                Some(inner) if inner.starts_with('}') => format!("{name}{{{labels}{inner}"),
                Some(inner) => format!("{name}{{{labels},{inner}"),
                None => format!("{name}{{{labels}}}{rest}"),
            };
            let family = match &current {
                Some(f) if name.starts_with(f.as_str()) => f.clone(),
                _ => name.to_string(),
            };
            self.entry(&family).samples.push(labelled);
        }
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let Some(family) = self.by_name.get(name) else {
                continue;
            };
            if let Some(help) = &family.help {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            if let Some(kind) = &family.kind {
                let _ = writeln!(out, "# TYPE {name} {kind}");
            }
            for sample in &family.samples {
                let _ = writeln!(out, "{sample}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_samples_get_labels_and_families_stay_together() {
        let mut f = Families::default();
        let text = "# HELP floe_records_in_total Records in.\n# TYPE floe_records_in_total counter\nfloe_records_in_total{operator=\"map\"} 5\nfloe_up 1\n# TYPE lat histogram\nlat_bucket{le=\"1\"} 2\nlat_sum 3\nempty{} 4\n";
        f.absorb(text, "job=\"j\",worker=\"0\"");
        f.absorb(text, "job=\"j\",worker=\"1\"");
        let out = f.finish();
        assert_eq!(out.matches("# TYPE floe_records_in_total counter").count(), 1);
        assert!(out.contains("floe_records_in_total{job=\"j\",worker=\"0\",operator=\"map\"} 5\nfloe_records_in_total{job=\"j\",worker=\"1\",operator=\"map\"} 5"), "{out}");
        assert!(out.contains("floe_up{job=\"j\",worker=\"1\"} 1"), "{out}");
        assert!(
            out.contains(
                "lat_bucket{job=\"j\",worker=\"0\",le=\"1\"} 2\nlat_sum{job=\"j\",worker=\"0\"} 3\nlat_bucket"
            ),
            "{out}"
        );
        assert!(out.contains("empty{job=\"j\",worker=\"0\"} 4"), "{out}");
    }

    #[test]
    fn operators_merge_by_node() {
        let op = |node, rin, bp, wm| OperatorMetrics {
            node,
            name: format!("op{node}"),
            records_in: rin,
            records_out: rin,
            records_in_per_sec: rin as f64,
            records_out_per_sec: 0.0,
            backpressure: bp,
            watermark: wm,
        };
        let a = vec![op(0, 10, 0.1, Some(50)), op(1, 1, 0.0, None)];
        let b = vec![op(0, 5, 0.7, Some(40))];
        let merged = merge_operators(&[&a, &b]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].records_in, 15);
        assert_eq!(merged[0].records_in_per_sec, 15.0);
        assert_eq!(merged[0].backpressure, 0.7);
        assert_eq!(merged[0].watermark, Some(40));
        assert_eq!(merged[1].watermark, None);
    }
}
