//! Job options: command-line flags, environment variables (`FLOE_*`) and an optional TOML
//! file, in that order of precedence, over built-in defaults.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::error::{DslError, Result};

/// The options every Floe job accepts. Flatten them into a job's own `clap` parser with
/// `#[command(flatten)]`, or let [`Env::from_args`](crate::Env::from_args) parse them alone.
///
/// ```
/// use clap::Parser;
/// use floe_dsl::EnvOptions;
/// #[derive(Parser)]
/// struct MyJob {
///     #[command(flatten)]
///     floe: EnvOptions,
///     /// The job's own flag
///     #[arg(long, default_value = "in.jsonl")]
///     input: String,
/// }
/// let args = MyJob::parse_from(["my-job", "--parallelism", "2", "--input", "x.jsonl"]);
/// assert_eq!(args.floe.resolve().unwrap().parallelism, 2);
/// assert_eq!(args.input, "x.jsonl");
/// ```
#[derive(Args, Clone, Debug, Default)]
pub struct EnvOptions {
    /// Parallel subtasks per operator [default: number of CPU cores]
    #[arg(long, short = 'p', env = "FLOE_PARALLELISM")]
    pub parallelism: Option<usize>,
    /// Number of key groups (upper bound of parallelism; fixed for the life of the state) [default: 128]
    #[arg(long, env = "FLOE_MAX_PARALLELISM")]
    pub max_parallelism: Option<u16>,
    /// Records per batch between tasks [default: 1024]
    #[arg(long, env = "FLOE_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Batches a channel buffers before its producer waits [default: 8]
    #[arg(long, env = "FLOE_CHANNEL_CAPACITY")]
    pub channel_capacity: Option<usize>,
    /// Run every operator in its own task, with a channel between each (for measurement)
    #[arg(long, env = "FLOE_NO_CHAINING")]
    pub no_chaining: bool,
    /// Stop the job at the first malformed input line instead of setting it aside
    #[arg(long, env = "FLOE_FAIL_ON_BAD_INPUT")]
    pub fail_on_bad_input: bool,
    /// Longest record of a file source, in bytes; a longer one is a bad record [default: 1048576]
    #[arg(long, env = "FLOE_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Directory of checkpoints: the job takes checkpoints there and, on start, resumes
    /// from the newest complete one
    #[arg(long, env = "FLOE_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints (0: only the final one) [default: 5000]
    #[arg(long, env = "FLOE_CHECKPOINT_INTERVAL_MS")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Complete checkpoints kept [default: 3]
    #[arg(long, env = "FLOE_CHECKPOINT_RETAIN")]
    pub checkpoint_retain: Option<usize>,
    /// Where keyed state lives: rocksdb or memory [default: rocksdb, if built in]
    #[arg(long, env = "FLOE_STATE_BACKEND", value_parser = ["memory", "rocksdb"])]
    pub state_backend: Option<String>,
    /// Working directory of the RocksDB backend, made private to the user (0700) [default: <temp dir>/floe-state-<uid>]
    #[arg(long, env = "FLOE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Entries per state and subtask the RocksDB backend caches on the heap [default: 1000000]
    #[arg(long, env = "FLOE_STATE_CACHE_ENTRIES")]
    pub state_cache_entries: Option<usize>,
    /// Megabytes of RocksDB block cache per stateful subtask [default: 64]
    #[arg(long, env = "FLOE_STATE_BLOCK_CACHE_MB")]
    pub state_block_cache_mb: Option<usize>,
    /// Where savepoints go: SIGUSR1 writes one, SIGTERM or Ctrl-C stops the job with one
    #[arg(long, env = "FLOE_SAVEPOINT_DIR")]
    pub savepoint_dir: Option<PathBuf>,
    /// Resume from the savepoint in this directory (at any parallelism)
    #[arg(long, env = "FLOE_FROM_SAVEPOINT")]
    pub from_savepoint: Option<PathBuf>,
    /// Largest encoded batch, in MB, that workers of a cluster send each other; a larger
    /// one fails the job, saying so [default: 64]
    #[arg(long, env = "FLOE_MAX_FRAME_MB")]
    pub max_frame_mb: Option<usize>,
    /// Start from scratch, with a warning, when --checkpoint-dir holds checkpoints none of
    /// which can be restored (all corrupt or gone); without it the job fails
    #[arg(long, env = "FLOE_ALLOW_FRESH_START")]
    pub allow_fresh_start: bool,
    /// Restore a checkpoint or savepoint that holds state of operators this job no longer
    /// has, dropping that state; without it such a restore is refused
    #[arg(long, env = "FLOE_ALLOW_NON_RESTORED_STATE")]
    pub allow_non_restored_state: bool,
    /// Serve the process's metrics for Prometheus at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9464; keep it on loopback unless a firewall guards it)
    #[arg(long, env = "FLOE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// TOML file with any of these options (keys as the flags, with `_` for `-`)
    #[arg(long, env = "FLOE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The options as a TOML file gives them.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    parallelism: Option<usize>,
    max_parallelism: Option<u16>,
    batch_size: Option<usize>,
    channel_capacity: Option<usize>,
    no_chaining: Option<bool>,
    fail_on_bad_input: Option<bool>,
    max_record_bytes: Option<usize>,
    checkpoint_dir: Option<PathBuf>,
    checkpoint_interval_ms: Option<u64>,
    checkpoint_retain: Option<usize>,
    savepoint_dir: Option<PathBuf>,
    from_savepoint: Option<PathBuf>,
    allow_fresh_start: Option<bool>,
    allow_non_restored_state: Option<bool>,
    state_backend: Option<String>,
    state_dir: Option<PathBuf>,
    state_cache_entries: Option<usize>,
    state_block_cache_mb: Option<usize>,
    max_frame_mb: Option<usize>,
    metrics_addr: Option<String>,
}

/// Resolved, validated options.
///
/// ```
/// use floe_dsl::JobConfig;
/// let c = JobConfig::default();
/// assert_eq!((c.max_parallelism, c.batch_size, c.chaining), (128, 1024, true));
/// ```
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Default parallelism of operators.
    pub parallelism: usize,
    /// Number of key groups.
    pub max_parallelism: u16,
    /// Records per batch.
    pub batch_size: usize,
    /// Channel capacity in batches.
    pub channel_capacity: usize,
    /// Whether operators are chained.
    pub chaining: bool,
    /// Whether a malformed input line fails the job.
    pub fail_on_bad_input: bool,
    /// Longest record a file source reads (bytes); longer ones are bad records.
    pub max_record_bytes: usize,
    /// Where checkpoints go; `None` takes none.
    pub checkpoint_dir: Option<PathBuf>,
    /// Milliseconds between checkpoints (0: only the final one).
    pub checkpoint_interval_ms: u64,
    /// Complete checkpoints kept.
    pub checkpoint_retain: usize,
    /// Where savepoints triggered by signals go.
    pub savepoint_dir: Option<PathBuf>,
    /// The savepoint to resume from.
    pub from_savepoint: Option<PathBuf>,
    /// Whether the job starts from scratch when checkpoints exist but none can be restored.
    pub allow_fresh_start: bool,
    /// Whether state of operators the job no longer has is dropped on restore (else refused).
    pub allow_non_restored_state: bool,
    /// Where keyed state lives.
    pub state_backend: floe_checkpoints::StateBackendKind,
    /// Where the metrics endpoint listens (`--metrics-addr`), if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Largest encoded batch, in bytes, between workers of a cluster.
    pub max_frame_bytes: usize,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_parallelism: floe_checkpoints::DEFAULT_MAX_PARALLELISM,
            batch_size: 1024,
            channel_capacity: 8,
            chaining: true,
            fail_on_bad_input: false,
            max_record_bytes: floe_operators::source::file::DEFAULT_MAX_RECORD_BYTES,
            checkpoint_dir: None,
            checkpoint_interval_ms: 5_000,
            checkpoint_retain: 3,
            savepoint_dir: None,
            from_savepoint: None,
            allow_fresh_start: false,
            allow_non_restored_state: false,
            state_backend: if cfg!(feature = "rocksdb") {
                rocksdb(None, None, None)
            } else {
                floe_checkpoints::StateBackendKind::Memory
            },
            metrics_addr: None,
            max_frame_bytes: floe_runtime::DEFAULT_MAX_FRAME,
        }
    }
}

/// The RocksDB backend with defaults for what is not given.
fn rocksdb(
    dir: Option<PathBuf>,
    cache_entries: Option<usize>,
    block_cache_mb: Option<usize>,
) -> floe_checkpoints::StateBackendKind {
    floe_checkpoints::StateBackendKind::RocksDb {
        dir: dir.unwrap_or_else(floe_runtime::default_state_dir),
        cache_entries: cache_entries.unwrap_or(1_000_000),
        block_cache_bytes: block_cache_mb.unwrap_or(64).saturating_mul(1 << 20),
    }
}

fn read_file(path: &Path) -> Result<FileOptions> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DslError::Config(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| DslError::Config(format!("config file {} is invalid: {e}", path.display())))
}

impl EnvOptions {
    /// Merges flags, environment and file over the defaults, and checks the result.
    ///
    /// ```
    /// use floe_dsl::EnvOptions;
    /// let o = EnvOptions { batch_size: Some(256), ..Default::default() };
    /// assert_eq!(o.resolve().unwrap().batch_size, 256);
    /// ```
    pub fn resolve(&self) -> Result<JobConfig> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileOptions::default(),
        };
        let d = JobConfig::default();
        let c = JobConfig {
            parallelism: self.parallelism.or(file.parallelism).unwrap_or(d.parallelism),
            max_parallelism: self
                .max_parallelism
                .or(file.max_parallelism)
                .unwrap_or(d.max_parallelism),
            batch_size: self.batch_size.or(file.batch_size).unwrap_or(d.batch_size),
            channel_capacity: self
                .channel_capacity
                .or(file.channel_capacity)
                .unwrap_or(d.channel_capacity),
            chaining: !(self.no_chaining || file.no_chaining.unwrap_or(false)),
            fail_on_bad_input: self.fail_on_bad_input || file.fail_on_bad_input.unwrap_or(false),
            max_record_bytes: self
                .max_record_bytes
                .or(file.max_record_bytes)
                .unwrap_or(d.max_record_bytes),
            checkpoint_dir: self.checkpoint_dir.clone().or(file.checkpoint_dir),
            checkpoint_interval_ms: self
                .checkpoint_interval_ms
                .or(file.checkpoint_interval_ms)
                .unwrap_or(d.checkpoint_interval_ms),
            checkpoint_retain: self
                .checkpoint_retain
                .or(file.checkpoint_retain)
                .unwrap_or(d.checkpoint_retain),
            savepoint_dir: self.savepoint_dir.clone().or(file.savepoint_dir),
            from_savepoint: self.from_savepoint.clone().or(file.from_savepoint),
            allow_fresh_start: self.allow_fresh_start || file.allow_fresh_start.unwrap_or(false),
            allow_non_restored_state: self.allow_non_restored_state || file.allow_non_restored_state.unwrap_or(false),
            state_backend: match self.state_backend.clone().or(file.state_backend).as_deref() {
                None if !cfg!(feature = "rocksdb") => floe_checkpoints::StateBackendKind::Memory,
                Some("memory") => floe_checkpoints::StateBackendKind::Memory,
                None | Some("rocksdb") => rocksdb(
                    self.state_dir.clone().or(file.state_dir),
                    self.state_cache_entries.or(file.state_cache_entries),
                    self.state_block_cache_mb.or(file.state_block_cache_mb),
                ),
                Some(other) => {
                    return Err(DslError::Config(format!(
                        "state_backend = {other:?} is not a backend: use \"memory\" or \"rocksdb\""
                    )))
                }
            },
            metrics_addr: match self.metrics_addr.clone().or(file.metrics_addr) {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    DslError::Config(format!(
                        "--metrics-addr {a:?} is not an address: give IP:PORT, e.g. 127.0.0.1:9464"
                    ))
                })?),
            },
            max_frame_bytes: self
                .max_frame_mb
                .or(file.max_frame_mb)
                .map_or(d.max_frame_bytes, |mb| mb.saturating_mul(1 << 20)),
        };
        c.validate()?;
        Ok(c)
    }
}

impl JobConfig {
    /// Checks that the values can run, saying what to change if not.
    ///
    /// ```
    /// use floe_dsl::JobConfig;
    /// let c = JobConfig { parallelism: 300, ..JobConfig::default() };
    /// assert!(c.validate().unwrap_err().to_string().contains("--max-parallelism"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.parallelism == 0 {
            return Err(DslError::Config("--parallelism must be at least 1".into()));
        }
        if self.max_parallelism == 0 {
            return Err(DslError::Config("--max-parallelism must be at least 1".into()));
        }
        if self.parallelism > usize::from(self.max_parallelism) {
            return Err(DslError::Config(format!(
                "--parallelism {} exceeds --max-parallelism {}: lower the parallelism or raise the max parallelism",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(DslError::Config("--batch-size must be at least 1".into()));
        }
        if self.checkpoint_dir.is_none() && (self.savepoint_dir.is_some() || self.from_savepoint.is_some()) {
            return Err(DslError::Config(
                "--savepoint-dir and --from-savepoint need --checkpoint-dir (where the running job checkpoints)".into(),
            ));
        }
        if self.checkpoint_retain == 0 {
            return Err(DslError::Config("--checkpoint-retain must be at least 1".into()));
        }
        if self.channel_capacity == 0 {
            return Err(DslError::Config("--channel-capacity must be at least 1".into()));
        }
        if !(1 << 20..u32::MAX as usize).contains(&self.max_frame_bytes) {
            return Err(DslError::Config(format!(
                "--max-frame-mb must be from 1 to 4095 (a frame's length is 32 bits), not {} MB",
                self.max_frame_bytes >> 20
            )));
        }
        if self.max_record_bytes == 0 {
            return Err(DslError::Config(
                "--max-record-bytes must be at least 1 (the default is 1048576: 1 MiB)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, "parallelism = 3\nbatch_size = 10\nmax_record_bytes = 4096\n").unwrap();
        let o = EnvOptions {
            parallelism: Some(2),
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = o.resolve().unwrap();
        assert_eq!((c.parallelism, c.batch_size, c.channel_capacity), (2, 10, 8));
        assert_eq!(c.max_record_bytes, 4096);
        let o = EnvOptions {
            max_record_bytes: Some(100),
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(o.resolve().unwrap().max_record_bytes, 100);
        assert_eq!(EnvOptions::default().resolve().unwrap().max_record_bytes, 1 << 20);
    }

    #[test]
    fn restore_permissions_are_off_unless_a_flag_or_the_file_turns_them_on() {
        let c = EnvOptions::default().resolve().unwrap();
        assert!(!c.allow_fresh_start && !c.allow_non_restored_state);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floe.toml");
        std::fs::write(&path, "allow_fresh_start = true\n").unwrap();
        let o = EnvOptions {
            allow_non_restored_state: true,
            config: Some(path),
            ..Default::default()
        };
        let c = o.resolve().unwrap();
        assert!(c.allow_fresh_start && c.allow_non_restored_state);
    }

    #[test]
    fn bad_values_say_what_to_change() {
        let o = EnvOptions {
            parallelism: Some(0),
            ..Default::default()
        };
        assert!(o
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("--parallelism must be at least 1"));
        let o = EnvOptions {
            parallelism: Some(200),
            ..Default::default()
        };
        assert!(o
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("exceeds --max-parallelism 128"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "paralelism = 3\n").unwrap();
        let o = EnvOptions {
            config: Some(path.clone()),
            ..Default::default()
        };
        let e = o.resolve().unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("paralelism"), "{e}");
        for mb in [0, 4096] {
            let o = EnvOptions {
                max_frame_mb: Some(mb),
                ..Default::default()
            };
            let e = o.resolve().unwrap_err().to_string();
            assert!(e.contains("--max-frame-mb must be from 1 to 4095"), "{e}");
        }
        let o = EnvOptions {
            max_frame_mb: Some(256),
            ..Default::default()
        };
        assert_eq!(o.resolve().unwrap().max_frame_bytes, 256 << 20);
        let o = EnvOptions {
            config: Some(dir.path().join("missing.toml")),
            ..Default::default()
        };
        assert!(o.resolve().unwrap_err().to_string().contains("missing.toml"));
        let o = EnvOptions {
            max_record_bytes: Some(0),
            ..Default::default()
        };
        assert!(o.resolve().unwrap_err().to_string().contains("--max-record-bytes"));
    }
}
