//! The arguments of the cluster commands, and the parsers of their values.

use std::path::PathBuf;

use crate::client::ClusterArgs;
use crate::protocol::RestartStrategy;

/// The accepted forms of `--restart`, for error messages: `none`,
/// `fixed:<attempts>:<delay_ms>` or `exponential:<attempts>:<initial_ms>:<max_ms>[:<multiplier>]`.
pub const RESTART_FORMS: &str = "none, fixed:<attempts>:<delay_ms> or \
     exponential:<attempts>:<initial_ms>:<max_ms>[:<multiplier>]";

/// `floe submit`: upload a job binary and run it.
#[derive(Clone, Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// The job binary (built with the Floe DSL).
    #[arg(value_name = "BINARY")]
    pub binary: PathBuf,
    /// Parallelism: slots the job takes (at least 1).
    #[arg(long, short = 'p', value_name = "N", default_value_t = 1, value_parser = parse_parallelism)]
    pub parallelism: usize,
    /// A name to show (defaults to the binary's file name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Restart strategy: see [`RESTART_FORMS`] (default: `fixed:10:1000`).
    #[arg(
        long,
        value_name = "STRATEGY",
        value_parser = parse_restart,
        help = "Restart strategy: none, fixed:<attempts>:<delay_ms> or \
                exponential:<attempts>:<initial_ms>:<max_ms>[:<multiplier>] (default: fixed:10:1000)"
    )]
    pub restart: Option<RestartStrategy>,
    /// Checkpoint interval in ms (default: the job's own setting).
    #[arg(long, value_name = "MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Start from this savepoint directory (a path on the job manager's machine).
    #[arg(long, value_name = "DIR")]
    pub savepoint: Option<String>,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Arguments of the job binary (after `--`).
    #[arg(last = true, value_name = "JOB_ARGS")]
    pub args: Vec<String>,
}

/// A listing of the cluster: `floe list` (the jobs) and `floe taskmanagers` (the task
/// managers and their slots).
#[derive(Clone, Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command about one job (`status`, `cancel`).
#[derive(Clone, Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// The job's id (see `floe list`).
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `floe savepoint` and `floe stop`: a job and where to write the savepoint.
#[derive(Clone, Debug, clap::Args)]
pub struct SavepointArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// The job's id (see `floe list`).
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Directory to write the savepoint to, on the job manager's machine (default: a new
    /// directory in its store).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `floe resume`: run a stopped job again.
#[derive(Clone, Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// The job's id (see `floe list`).
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The savepoint to resume from (default: the one the job stopped with).
    #[arg(long, value_name = "DIR")]
    pub savepoint: Option<String>,
    /// A new parallelism (default: the job's).
    #[arg(long, short = 'p', value_name = "N", value_parser = parse_parallelism)]
    pub parallelism: Option<usize>,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `floe rescale`: change a running job's parallelism (stop with a savepoint, resume).
#[derive(Clone, Debug, clap::Args)]
pub struct RescaleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// The job's id (see `floe list`).
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The new parallelism (at least 1).
    #[arg(long, short = 'p', value_name = "N", value_parser = parse_parallelism)]
    pub parallelism: usize,
    /// Print the API answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses a parallelism: a whole number, at least 1.
pub fn parse_parallelism(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err("the parallelism must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{value:?} is not a parallelism: give a whole number, 1 or more"
        )),
    }
}

/// Parses `--restart`: see [`RESTART_FORMS`].
pub fn parse_restart(value: &str) -> Result<RestartStrategy, String> {
    let bad = |why: &str| format!("{value:?}: {why}; the accepted forms are {RESTART_FORMS}");
    let parts: Vec<&str> = value.trim().split(':').collect();
    let number = |s: &str, what: &str| -> Result<u64, String> {
        s.trim()
            .parse::<u64>()
            .map_err(|_| bad(&format!("{what} {s:?} is not a whole number")))
    };
    match parts.as_slice() {
        ["none"] => Ok(RestartStrategy::None),
        ["fixed", attempts, delay] => Ok(RestartStrategy::FixedDelay {
            attempts: attempts_of(number(attempts, "attempts")?).map_err(|e| bad(&e))?,
            delay_ms: number(delay, "delay_ms")?,
        }),
        ["exponential", attempts, initial, max, rest @ ..] if rest.len() <= 1 => {
            let multiplier = match rest.first() {
                None => 2.0,
                Some(m) => match m.trim().parse::<f64>() {
                    Ok(m) if m.is_finite() && m >= 1.0 => m,
                    _ => return Err(bad(&format!("multiplier {m:?} must be a number >= 1"))),
                },
            };
            let initial_ms = number(initial, "initial_ms")?;
            let max_ms = number(max, "max_ms")?;
            if max_ms < initial_ms {
                return Err(bad("max_ms is below initial_ms"));
            }
            Ok(RestartStrategy::ExponentialBackoff {
                attempts: attempts_of(number(attempts, "attempts")?).map_err(|e| bad(&e))?,
                initial_ms,
                max_ms,
                multiplier,
            })
        }
        _ => Err(bad("not a restart strategy")),
    }
}

fn attempts_of(n: u64) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("attempts {n} is too large"))
}

/// A restart strategy in words.
pub fn describe_restart(strategy: &RestartStrategy) -> String {
    match strategy {
        RestartStrategy::None => "none".to_owned(),
        RestartStrategy::FixedDelay { attempts, delay_ms } => {
            format!("fixed delay: up to {attempts} restarts, {delay_ms} ms apart")
        }
        RestartStrategy::ExponentialBackoff {
            attempts,
            initial_ms,
            max_ms,
            multiplier,
        } => format!(
            "exponential backoff: up to {attempts} restarts, waits from {initial_ms} ms to \
             {max_ms} ms (x{multiplier})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_forms_parse() {
        assert_eq!(parse_restart("none"), Ok(RestartStrategy::None));
        assert_eq!(
            parse_restart("fixed:3:500"),
            Ok(RestartStrategy::FixedDelay {
                attempts: 3,
                delay_ms: 500
            })
        );
        assert_eq!(
            parse_restart("exponential:5:100:10000"),
            Ok(RestartStrategy::ExponentialBackoff {
                attempts: 5,
                initial_ms: 100,
                max_ms: 10_000,
                multiplier: 2.0
            })
        );
        for bad in ["fixed", "fixed:x:1", "always", "exponential:1:10:5", "fixed:1:2:3"] {
            let err = parse_restart(bad).unwrap_err();
            assert!(err.contains("accepted forms are none, fixed:"), "{bad}: {err}");
        }
    }

    #[test]
    fn parallelism_is_at_least_one() {
        assert_eq!(parse_parallelism("3"), Ok(3));
        assert!(parse_parallelism("0").unwrap_err().contains("at least 1"));
        assert!(parse_parallelism("-1").is_err());
    }
}
