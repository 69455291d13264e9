//! Human output of `floe status`, `floe list` and `floe taskmanagers`.

use std::io::{self, Write};

use crate::protocol::{JobDetail, JobSummary, TaskManagerInfo};

use super::args::describe_restart;
use super::format::{age, bytes, or_dash, rate, span, Table};

/// The jobs as a table, newest last.
pub fn write_jobs(out: &mut dyn Write, jobs: &[JobSummary], now: i64) -> io::Result<()> {
    if jobs.is_empty() {
        return writeln!(out, "no jobs (submit one with `floe submit <binary>`)");
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "STATE",
        ">PARALLELISM",
        ">RESTARTS",
        ">CHECKPOINT",
        "SUBMITTED",
    ]);
    for job in jobs {
        table.row(vec![
            job.id.clone(),
            job.name.clone(),
            job.state.as_str().to_owned(),
            job.parallelism.to_string(),
            job.restarts.to_string(),
            or_dash(job.last_checkpoint),
            age(job.submitted_at, now),
        ]);
    }
    table.write(out)
}

/// The task managers as a table.
pub fn write_task_managers(out: &mut dyn Write, tms: &[TaskManagerInfo], now: i64) -> io::Result<()> {
    if tms.is_empty() {
        return writeln!(out, "no task managers (start one with `floe taskmanager --slots N`)");
    }
    let mut table = Table::new(&["ID", "HOST", ">PID", ">SLOTS", ">USED", "LAST HEARTBEAT"]);
    for tm in tms {
        table.row(vec![
            tm.id.clone(),
            tm.host.clone(),
            tm.pid.to_string(),
            tm.slots.to_string(),
            tm.slots_used.to_string(),
            age(tm.last_heartbeat, now),
        ]);
    }
    table.write(out)
}

/// Everything about one job: its summary, history, checkpoints, exceptions and operators.
pub fn write_job(out: &mut dyn Write, job: &JobDetail, now: i64) -> io::Result<()> {
    let s = &job.summary;
    let mut fields = Table::new(&["", ""]);
    let mut field = |name: &str, value: String| fields.row(vec![name.to_owned(), value]);
    field("job", s.id.clone());
    field("name", s.name.clone());
    field("state", s.state.as_str().to_owned());
    field("parallelism", s.parallelism.to_string());
    field("restarts", s.restarts.to_string());
    field("submitted", age(s.submitted_at, now));
    field("attempt", or_dash(job.attempt));
    field("last checkpoint", or_dash(s.last_checkpoint));
    field("artifact", job.artifact.clone());
    field(
        "arguments",
        if job.args.is_empty() {
            "-".to_owned()
        } else {
            job.args.join(" ")
        },
    );
    field("restart strategy", describe_restart(&job.restart));
    if let Some(savepoint) = &job.savepoint {
        field("savepoint", savepoint.clone());
    }
    // The header row of a field table is blank: skip it.
    let mut text = Vec::new();
    fields.write(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    for line in text.lines().skip(1) {
        writeln!(out, "{line}")?;
    }

    writeln!(out, "\nHistory")?;
    let mut history = Table::new(&["  STATE", "WHEN", "REASON"]);
    for change in &job.history {
        history.row(vec![
            format!("  {}", change.state.as_str()),
            age(change.at, now),
            one_line(change.reason.as_deref().unwrap_or_default()),
        ]);
    }
    write_or_none(out, &history, "  none")?;

    writeln!(out, "\nCheckpoints")?;
    let mut checkpoints = Table::new(&["  ID", ">SIZE", ">DURATION", "COMPLETED", "KIND", "FAILURE"]);
    for c in &job.checkpoints {
        checkpoints.row(vec![
            format!("  {}", c.id),
            bytes(c.bytes),
            span(c.duration_ms),
            age(c.completed_at, now),
            if c.is_savepoint { "savepoint" } else { "checkpoint" }.to_owned(),
            one_line(c.failure.as_deref().unwrap_or_default()),
        ]);
    }
    write_or_none(out, &checkpoints, "  none yet")?;

    writeln!(out, "\nExceptions")?;
    if job.exceptions.is_empty() {
        writeln!(out, "  none")?;
    }
    for e in &job.exceptions {
        writeln!(out, "  attempt {}, {}:", e.attempt, age(e.at, now))?;
        for line in e.message.lines() {
            writeln!(out, "    {line}")?;
        }
    }

    writeln!(out, "\nOperators")?;
    let mut operators = Table::new(&[
        "  NODE",
        "NAME",
        ">IN",
        ">OUT",
        ">IN/S",
        ">OUT/S",
        ">BACKPRESSURE",
        ">WATERMARK",
    ]);
    for o in &job.operators {
        operators.row(vec![
            format!("  {}", o.node),
            o.name.clone(),
            o.records_in.to_string(),
            o.records_out.to_string(),
            rate(o.records_in_per_sec),
            rate(o.records_out_per_sec),
            format!("{:.0}%", o.backpressure * 100.0),
            or_dash(o.watermark),
        ]);
    }
    write_or_none(out, &operators, "  none reported (the job is not running)")
}

/// A table cell of a text that may span lines.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

fn write_or_none(out: &mut dyn Write, table: &Table, none: &str) -> io::Result<()> {
    if table.is_empty() {
        writeln!(out, "{none}")
    } else {
        table.write(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CheckpointInfo, ExceptionInfo, JobState, OperatorMetrics, RestartStrategy, StatusChange};

    fn detail() -> JobDetail {
        JobDetail {
            summary: JobSummary {
                id: "j-000000000001".into(),
                name: "fraud".into(),
                state: JobState::Restarting,
                parallelism: 2,
                restarts: 1,
                submitted_at: 0,
                last_checkpoint: Some(7),
            },
            artifact: "ab".repeat(32),
            args: vec!["--rate".into(), "10".into()],
            restart: RestartStrategy::None,
            history: vec![
                StatusChange {
                    state: JobState::Scheduled,
                    at: 0,
                    reason: None,
                },
                StatusChange {
                    state: JobState::Restarting,
                    at: 60_000,
                    reason: Some("worker 1 failed".into()),
                },
            ],
            graph: None,
            operators: vec![OperatorMetrics {
                node: 0,
                name: "source".into(),
                records_in: 0,
                records_out: 1500,
                records_in_per_sec: 0.0,
                records_out_per_sec: 250.0,
                backpressure: 0.25,
                watermark: None,
            }],
            checkpoints: vec![CheckpointInfo {
                id: 7,
                bytes: 2048,
                duration_ms: 120,
                completed_at: 50_000,
                is_savepoint: false,
                failure: None,
            }],
            exceptions: vec![ExceptionInfo {
                at: 60_000,
                attempt: 1,
                message: "worker 1 exited with code 3\npanicked at src/main.rs".into(),
            }],
            savepoint: None,
            attempt: Some(2),
        }
    }

    #[test]
    fn a_job_is_shown_in_sections() {
        let mut out = Vec::new();
        write_job(&mut out, &detail(), 120_000).unwrap();
        let text = String::from_utf8(out).unwrap();
        for expected in [
            "job               j-000000000001",
            "state             restarting",
            "submitted         2m 0s ago",
            "arguments         --rate 10",
            "restart strategy  none",
            "  restarting  1m 0s ago  worker 1 failed",
            "  7   2.0 KiB     120ms  1m 10s ago  checkpoint",
            "  attempt 1, 1m 0s ago:",
            "    panicked at src/main.rs",
            "  0     source   0  1500   0.0    250           25%          -",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
    }

    #[test]
    fn empty_lists_say_what_to_do() {
        let mut out = Vec::new();
        write_jobs(&mut out, &[], 0).unwrap();
        write_task_managers(&mut out, &[], 0).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("floe submit") && text.contains("floe taskmanager"));
    }
}
