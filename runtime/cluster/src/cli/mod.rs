//! The cluster commands of the `floe` CLI: `submit`, `list`, `status`, `cancel`,
//! `savepoint`, `stop`, `resume`, `rescale` and `taskmanagers`. Each has its clap `Args`
//! here and a `run_*` function writing to any [`Write`], so it is testable; the binary maps
//! an error to exit code 1 and the line `floe <command>: <message>`.
//!
//! With `--json` a command prints the job manager's answer as one JSON document; otherwise
//! aligned tables, with times as ages (`5m 3s ago`).

pub mod args;
pub mod format;
pub mod status;

use std::io::Write;

use serde::Serialize;

use crate::error::{ClusterError, Result};
use crate::protocol::{RescaleRequest, ResumeRequest, SavepointRequest, SubmitRequest};

pub use crate::client::ClusterArgs;
pub use args::{
    parse_parallelism, parse_restart, JobArgs, ListArgs, RescaleArgs, ResumeArgs, SavepointArgs, SubmitArgs,
};

/// `floe submit`: uploads the binary, submits the job and prints its id.
pub fn run_submit(args: &SubmitArgs, out: &mut dyn Write) -> Result<()> {
    let client = args.cluster.client()?;
    let artifact = client.upload_artifact_file(&args.binary, None)?;
    let request = SubmitRequest {
        artifact: artifact.sha256,
        args: args.args.clone(),
        parallelism: args.parallelism,
        name: args.name.clone(),
        restart: args.restart.clone(),
        checkpoint_interval_ms: args.checkpoint_interval_ms,
        savepoint: args.savepoint.clone(),
    };
    let job = client.submit(&request)?;
    if args.json {
        return write_json(out, &job);
    }
    // The id alone, so that `JOB=$(floe submit ...)` works.
    writeln!(out, "{}", job.id).map_err(output_error)
}

/// `floe list`: the jobs.
pub fn run_list(args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let jobs = args.cluster.client()?.jobs()?;
    if args.json {
        return write_json(out, &jobs);
    }
    status::write_jobs(out, &jobs, format::now_ms()).map_err(output_error)
}

/// `floe status <job>`: state, history, checkpoints, exceptions and operators.
pub fn run_status(args: &JobArgs, out: &mut dyn Write) -> Result<()> {
    let job = naming(&args.job, args.cluster.client()?.job(&args.job))?;
    if args.json {
        return write_json(out, &job);
    }
    status::write_job(out, &job, format::now_ms()).map_err(output_error)
}

/// `floe cancel <job>`.
pub fn run_cancel(args: &JobArgs, out: &mut dyn Write) -> Result<()> {
    let job = naming(&args.job, args.cluster.client()?.cancel(&args.job))?;
    if args.json {
        return write_json(out, &job);
    }
    writeln!(out, "job {} is {}", job.id, job.state.as_str()).map_err(output_error)
}

/// `floe savepoint <job>`: waits until the savepoint is written.
pub fn run_savepoint(args: &SavepointArgs, out: &mut dyn Write) -> Result<()> {
    let request = SavepointRequest { dir: args.dir.clone() };
    let info = naming(&args.job, args.cluster.client()?.savepoint(&args.job, &request))?;
    if args.json {
        return write_json(out, &info);
    }
    writeln!(
        out,
        "savepoint of job {} written to {} (checkpoint {})",
        info.job, info.dir, info.checkpoint
    )
    .map_err(output_error)
}

/// `floe stop <job>`: stops the job with a savepoint.
pub fn run_stop(args: &SavepointArgs, out: &mut dyn Write) -> Result<()> {
    let request = SavepointRequest { dir: args.dir.clone() };
    let info = naming(&args.job, args.cluster.client()?.stop(&args.job, &request))?;
    if args.json {
        return write_json(out, &info);
    }
    writeln!(
        out,
        "job {} stopped with savepoint {} (checkpoint {}); run it again with `floe resume {}`",
        info.job, info.dir, info.checkpoint, info.job
    )
    .map_err(output_error)
}

/// `floe resume <job>`: runs a stopped job again from its savepoint.
pub fn run_resume(args: &ResumeArgs, out: &mut dyn Write) -> Result<()> {
    let request = ResumeRequest {
        savepoint: args.savepoint.clone(),
        parallelism: args.parallelism,
    };
    let job = naming(&args.job, args.cluster.client()?.resume(&args.job, &request))?;
    if args.json {
        return write_json(out, &job);
    }
    writeln!(
        out,
        "job {} is {} (parallelism {})",
        job.id,
        job.state.as_str(),
        job.parallelism
    )
    .map_err(output_error)
}

/// `floe rescale <job> --parallelism N`.
pub fn run_rescale(args: &RescaleArgs, out: &mut dyn Write) -> Result<()> {
    let request = RescaleRequest {
        parallelism: args.parallelism,
    };
    let job = naming(&args.job, args.cluster.client()?.rescale(&args.job, &request))?;
    if args.json {
        return write_json(out, &job);
    }
    writeln!(
        out,
        "job {} is {} at parallelism {}",
        job.id,
        job.state.as_str(),
        job.parallelism
    )
    .map_err(output_error)
}

/// `floe taskmanagers`: the task managers and their slots.
pub fn run_taskmanagers(args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let tms = args.cluster.client()?.taskmanagers()?;
    if args.json {
        return write_json(out, &tms);
    }
    status::write_task_managers(out, &tms, format::now_ms()).map_err(output_error)
}

/// Prints `value` as one pretty JSON document.
fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| {
        if e.is_io() {
            output_error(e.into())
        } else {
            ClusterError::Other(format!("cannot encode the answer as JSON: {e}"))
        }
    })?;
    writeln!(out).map_err(output_error)
}

fn output_error(e: std::io::Error) -> ClusterError {
    ClusterError::io("cannot write the output", e)
}

/// Makes sure an API error about a job names it.
fn naming<T>(job: &str, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        ClusterError::Api { status, message } if !message.contains(job) => ClusterError::Api {
            status,
            message: format!("job {job}: {message}"),
        },
        other => other,
    })
}
