//! The built-in command line of every job binary, in front of the job's own arguments:
//!
//! ```text
//! my-job [run] <job args>            run here, in one process (the default)
//! my-job graph [--dot] <job args>    print the job graph as JSON (or Graphviz DOT) and exit
//! my-job submit --job-manager URL [--token T] [--ca-cert PEM] [--parallelism N] [--name NAME]
//!        [--restart none|fixed:<attempts>:<ms>|exponential:<attempts>:<ms>:<max ms>]
//!        [--checkpoint-interval-ms MS] [--savepoint DIR] [--] <job args>
//!                                    upload this binary to a job manager and submit it
//! my-job worker                      run as a worker of a task manager (set up by it; the
//!                                    job args come with the worker's spec, not the command line)
//! ```
//!
//! A job's `main` passes its arguments through [`args`] before parsing its own:
//!
//! ```no_run
//! use floe_dsl::prelude::*;
//! let rest = floe_dsl::job::args(); // handles `submit`, notes `graph` and `worker`
//! let options = EnvOptions::default(); // a real job parses `rest` with clap
//! let env = Env::from_options(&options).unwrap();
//! env.generate(10, |i| i).print();
//! env.execute("my-job").unwrap(); // runs, prints the graph, or runs as a worker
//! # drop(rest);
//! ```

use std::ffi::OsString;
use std::sync::OnceLock;

use floe_cluster::client::{Client, DEFAULT_JOB_MANAGER};
use floe_cluster::protocol::{SubmitRequest, WorkerSpec, CA_CERT_ENV, JOB_MANAGER_ENV, TOKEN_ENV};

/// Parses `--restart` (the same forms as `floe submit`).
pub use floe_cluster::cli::parse_restart;

/// How this process runs the job.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Here, in one process.
    Run,
    /// Print the graph and exit (`dot`: Graphviz DOT rather than JSON).
    Graph {
        /// Whether to print DOT.
        dot: bool,
    },
    /// As one worker of an attempt a job manager scheduled.
    Worker(Box<WorkerSpec>),
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// The mode [`args`] found (run when it was not called).
pub fn mode() -> &'static Mode {
    MODE.get_or_init(|| Mode::Run)
}

/// Reads the mode word in front of the process arguments and returns the arguments for
/// the job's own parser (the program name first). `submit` is done here: the binary uploads
/// itself, submits, prints the job id and exits. Errors exit with code 2 and a message.
pub fn args() -> Vec<OsString> {
    args_from(std::env::args_os().collect())
}

/// [`args`] over given arguments.
pub fn args_from(all: Vec<OsString>) -> Vec<OsString> {
    let mut it = all.into_iter();
    let program = it.next().unwrap_or_else(|| "job".into());
    let rest: Vec<OsString> = it.collect();
    let word = rest.first().and_then(|w| w.to_str()).unwrap_or("");
    let (mode, skip) = match word {
        "run" => (Mode::Run, 1),
        "graph" => {
            let dot = rest.get(1).and_then(|a| a.to_str()) == Some("--dot");
            (Mode::Graph { dot }, if dot { 2 } else { 1 })
        }
        "worker" => match floe_cluster::worker::spec_from_env() {
            Ok(Some(spec)) => {
                // Before anything else: whatever the job does next, it must not outlive its
                // task manager.
                floe_cluster::worker::watch_parent();
                (Mode::Worker(Box::new(spec)), 1)
            }
            Ok(None) => fail("worker mode is for task managers: they set FLOE_WORKER_SPEC (use `run` to run here)"),
            Err(e) => fail(&e.to_string()),
        },
        "submit" => {
            let code = match submit(&program, &rest[1..]) {
                Ok(id) => {
                    println!("{id}");
                    0
                }
                Err(e) => {
                    eprintln!("submit: {e}");
                    1
                }
            };
            std::process::exit(code);
        }
        _ => (Mode::Run, 0),
    };
    // A worker's job arguments come with its spec, not on its command line, which any user
    // of the machine can read (they may hold secrets, such as `-X sasl.password=...`).
    let own: Vec<OsString> = match &mode {
        Mode::Worker(spec) => spec.args.iter().map(OsString::from).collect(),
        _ => rest.into_iter().skip(skip).collect(),
    };
    let _ = MODE.set(mode);
    std::iter::once(program).chain(own).collect()
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// Parses `submit`'s own flags (up to `--` or the first argument that is not one of them),
/// uploads this binary and submits it with the rest as the job's arguments.
fn submit(program: &OsString, args: &[OsString]) -> Result<String, String> {
    let mut url = std::env::var(JOB_MANAGER_ENV).unwrap_or_else(|_| DEFAULT_JOB_MANAGER.into());
    let mut token = std::env::var(TOKEN_ENV).ok();
    let mut ca_cert = std::env::var_os(CA_CERT_ENV).map(std::path::PathBuf::from);
    let mut request = SubmitRequest {
        artifact: String::new(),
        args: Vec::new(),
        parallelism: 1,
        name: None,
        restart: None,
        checkpoint_interval_ms: None,
        savepoint: None,
    };
    let mut i = 0;
    let text = |i: usize| -> Result<String, String> {
        args.get(i)
            .and_then(|a| a.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{} needs a value", args[i - 1].to_string_lossy()))
    };
    while i < args.len() {
        let flag = args[i].to_str().unwrap_or("");
        match flag {
            "--" => {
                i += 1;
                break;
            }
            "--job-manager" => url = text(i + 1)?,
            "--token" => token = Some(text(i + 1)?),
            "--ca-cert" => ca_cert = Some(text(i + 1)?.into()),
            "--parallelism" => {
                request.parallelism = text(i + 1)?
                    .parse()
                    .ok()
                    .filter(|p| *p >= 1)
                    .ok_or("--parallelism takes a whole number of at least 1")?
            }
            "--name" => request.name = Some(text(i + 1)?),
            "--restart" => request.restart = Some(parse_restart(&text(i + 1)?)?),
            "--checkpoint-interval-ms" => {
                request.checkpoint_interval_ms = Some(
                    text(i + 1)?
                        .parse()
                        .map_err(|_| "--checkpoint-interval-ms takes milliseconds")?,
                )
            }
            "--savepoint" => request.savepoint = Some(text(i + 1)?),
            _ => break,
        }
        i += 2;
    }
    request.args = args[i.min(args.len())..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary to upload it: {e}"))?;
    let name = std::path::Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let client = Client::with_ca_cert(url, token, ca_cert).map_err(|e| e.to_string())?;
    let artifact = client
        .upload_artifact_file(&exe, name.as_deref())
        .map_err(|e| e.to_string())?;
    request.artifact = artifact.sha256;
    if request.name.is_none() {
        request.name = name;
    }
    let job = client.submit(&request).map_err(|e| e.to_string())?;
    Ok(job.id)
}

/// In worker mode, the job manager's choices replace the job's own: parallelism, checkpoint
/// directory and interval, the savepoint to start from; the task manager's for the local
/// state directory; signals do not take savepoints.
pub(crate) fn apply_mode(mut config: crate::JobConfig) -> crate::JobConfig {
    if let Mode::Worker(spec) = mode() {
        config.parallelism = spec.parallelism;
        config.checkpoint_dir = Some(spec.checkpoint_dir.clone().into());
        if let Some(ms) = spec.checkpoint_interval_ms {
            config.checkpoint_interval_ms = ms;
        }
        config.from_savepoint = spec.restore_from.clone().map(Into::into);
        config.savepoint_dir = None;
        config.metrics_addr = None;
        // The task manager's private directory for this job's state.
        if let (Some(dir), floe_checkpoints::StateBackendKind::RocksDb { dir: state_dir, .. }) = (
            std::env::var_os(floe_cluster::protocol::WORKER_STATE_DIR_ENV),
            &mut config.state_backend,
        ) {
            *state_dir = dir.into();
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_cluster::protocol::RestartStrategy;

    #[test]
    fn restart_strategies_parse_and_bad_ones_say_the_forms() {
        assert_eq!(parse_restart("none").unwrap(), RestartStrategy::None);
        assert_eq!(
            parse_restart("fixed:3:500").unwrap(),
            RestartStrategy::FixedDelay {
                attempts: 3,
                delay_ms: 500
            }
        );
        assert!(matches!(
            parse_restart("exponential:5:100:2000").unwrap(),
            RestartStrategy::ExponentialBackoff { attempts: 5, .. }
        ));
        assert!(parse_restart("fixed:x:1").unwrap_err().contains("fixed:<attempts>"));
    }
}
