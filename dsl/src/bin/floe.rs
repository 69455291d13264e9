//! The `floe` command line: one subcommand per task.
//!
//! - `floe tail`: print the records a job writes.
//! - `floe jobmanager`: run the job manager (REST API, web page, scheduling, recovery).
//! - `floe taskmanager`: run a task manager (worker processes for the job manager).
//! - `floe submit <binary>`: upload a job binary and run it; prints the job id.
//! - `floe list`, `floe status <job>`, `floe taskmanagers`: what runs where.
//! - `floe cancel`, `floe savepoint`, `floe stop`, `floe resume`, `floe rescale`: change a
//!   job's course.
//!
//! The cluster commands find the job manager with `--job-manager URL` (or
//! `FLOE_JOB_MANAGER`, default `http://127.0.0.1:8081`) and authenticate with `--token`,
//! `--token-file` or `FLOE_TOKEN`; `--json` prints the job manager's answer as JSON.
//!
//! Exit codes: 0 when the command did what it was asked (including being stopped with
//! Ctrl-C, or its output being closed by a reader like `head`), 2 for a usage error
//! (printed by clap with the flag at fault), 1 for a runtime error, printed as one line
//! `floe <command>: <what went wrong and what to change>`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floe_cluster::cli::{self, JobArgs, ListArgs, RescaleArgs, ResumeArgs, SavepointArgs, SubmitArgs};
use floe_cluster::taskmanager::{self, TaskManagerArgs};
use floe_dsl::tail::{self, TailArgs};

/// Floe's command line.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about = "Floe's command line", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. A new one is a variant here (with its `Args` struct in a library, so
/// it can be tested) and an arm in `main`.
#[derive(Debug, Subcommand)]
enum Command {
    // Its help texts are those of `TailArgs` (a doc comment here would replace them).
    Tail(TailArgs),
    /// Run the job manager: it stores job binaries, schedules jobs on task managers and
    /// restarts them after failures.
    Jobmanager(floe_cluster::jobmanager::JobManagerArgs),
    /// Run a task manager: it offers slots to the job manager and runs workers in them.
    Taskmanager(TaskManagerArgs),
    /// Upload a job binary and run it as a job; prints the job id.
    Submit(SubmitArgs),
    /// List the jobs.
    List(ListArgs),
    /// Show a job: state, history, checkpoints, exceptions and operators.
    Status(JobArgs),
    /// Cancel a job.
    Cancel(JobArgs),
    /// Take a savepoint of a running job.
    Savepoint(SavepointArgs),
    /// Stop a job with a savepoint (resume it later with `floe resume`).
    Stop(SavepointArgs),
    /// Run a stopped job again from its savepoint.
    Resume(ResumeArgs),
    /// Change a running job's parallelism (stop with a savepoint, then resume).
    Rescale(RescaleArgs),
    /// List the task managers and their slots.
    Taskmanagers(ListArgs),
}

impl Command {
    /// The subcommand's name, for error messages.
    fn name(&self) -> &'static str {
        match self {
            Command::Tail(_) => "tail",
            Command::Jobmanager(_) => "jobmanager",
            Command::Taskmanager(_) => "taskmanager",
            Command::Submit(_) => "submit",
            Command::List(_) => "list",
            Command::Status(_) => "status",
            Command::Cancel(_) => "cancel",
            Command::Savepoint(_) => "savepoint",
            Command::Stop(_) => "stop",
            Command::Resume(_) => "resume",
            Command::Rescale(_) => "rescale",
            Command::Taskmanagers(_) => "taskmanagers",
        }
    }
}

fn main() -> ExitCode {
    // Usage errors exit with code 2, --help and --version with 0 (clap's defaults).
    let cli = Cli::parse();
    let name = cli.command.name();
    let result = match cli.command {
        Command::Tail(args) => run_tail(&args),
        Command::Jobmanager(args) => {
            floe_dsl::init_logging();
            floe_cluster::jobmanager::run(&args).map_err(|e| e.to_string())
        }
        Command::Taskmanager(args) => {
            floe_dsl::init_logging();
            taskmanager::run(&args).map_err(|e| e.to_string())
        }
        Command::Submit(args) => to_stdout(|out| cli::run_submit(&args, out)),
        Command::List(args) => to_stdout(|out| cli::run_list(&args, out)),
        Command::Status(args) => to_stdout(|out| cli::run_status(&args, out)),
        Command::Cancel(args) => to_stdout(|out| cli::run_cancel(&args, out)),
        Command::Savepoint(args) => to_stdout(|out| cli::run_savepoint(&args, out)),
        Command::Stop(args) => to_stdout(|out| cli::run_stop(&args, out)),
        Command::Resume(args) => to_stdout(|out| cli::run_resume(&args, out)),
        Command::Rescale(args) => to_stdout(|out| cli::run_rescale(&args, out)),
        Command::Taskmanagers(args) => to_stdout(|out| cli::run_taskmanagers(&args, out)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(io::stderr(), "floe {name}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a cluster command writing to stdout; a reader closing it early is not an error.
fn to_stdout(command: impl FnOnce(&mut dyn Write) -> floe_cluster::Result<()>) -> Result<(), String> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = command(&mut out).and_then(|()| {
        out.flush()
            .map_err(|e| floe_cluster::ClusterError::io("cannot write the output", e))
    });
    match result {
        Err(floe_cluster::ClusterError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| e.to_string()),
    }
}

/// `floe tail`: records go to stdout, flushed per record on a terminal (Rust's stdout is
/// line-buffered) and in large writes otherwise (`run` flushes whenever it is caught up).
fn run_tail(args: &TailArgs) -> Result<(), String> {
    let stdout = io::stdout();
    let ended = if stdout.is_terminal() {
        tail::run(args, &mut stdout.lock())
    } else {
        tail::run(args, &mut BufWriter::with_capacity(64 * 1024, stdout.lock()))
    };
    ended.map(|_| ()).map_err(|e| e.to_string())
}
