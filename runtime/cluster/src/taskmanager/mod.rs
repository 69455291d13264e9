//! The task manager (`floe taskmanager`): registers its slots with the job manager, sends
//! heartbeats (long polls that bring back commands) reporting its worker processes, and
//! deploys, kills and forgets workers as told.
//!
//! When the job manager cannot be reached the workers keep running while the task manager
//! retries; after [`GIVE_UP_AFTER`] of failures it kills them and exits with an error. When
//! the job manager no longer knows it (it restarted, or declared it lost), the task manager
//! kills its workers and registers again. SIGTERM and Ctrl-C kill the workers and end it.

pub mod process;
pub mod shutdown;
pub mod workers;

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::client::{check_sha256, Client, ClusterArgs};
use crate::error::{ClusterError, Result};
use crate::protocol::{
    Heartbeat, RegisterRequest, RegisterResponse, TmCommand, WorkerSpec, WorkerState, CA_CERT_ENV, JOB_MANAGER_ENV,
    TOKEN_ENV, WORKER_SPEC_ENV, WORKER_STATE_DIR_ENV,
};

pub use process::{Launch, WorkerProcess};
pub use shutdown::Shutdown;
pub use workers::Workers;

/// How long the job manager may be unreachable before the task manager gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// First wait between retries; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// `floe taskmanager`: run worker processes for the job manager.
#[derive(Clone, Debug, clap::Args)]
pub struct TaskManagerArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: ClusterArgs,
    /// Slots offered: subtasks this task manager runs at once (at least 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_slots)]
    pub slots: usize,
    /// Directory for downloaded job binaries (`artifacts/`) and the local state of its
    /// workers (`state/<job id>/`, private to this user); created if missing.
    #[arg(long, value_name = "DIR", default_value = "floe-tm")]
    pub work_dir: PathBuf,
    /// The address its workers listen on for data from other workers.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub host: String,
}

impl TaskManagerArgs {
    /// Arguments for a task manager of the job manager `cluster`.
    pub fn new(cluster: ClusterArgs, slots: usize, work_dir: impl Into<PathBuf>) -> Self {
        TaskManagerArgs {
            cluster,
            slots,
            work_dir: work_dir.into(),
            host: "127.0.0.1".into(),
        }
    }
}

fn parse_slots(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("a task manager needs at least 1 slot".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{value:?} is not a number of slots (give 1 or more)")),
    }
}

/// Runs a task manager until SIGTERM or Ctrl-C (then `Ok`), or until the job manager stays
/// unreachable or refuses it (then an error). Its workers are killed either way.
pub fn run(args: &TaskManagerArgs) -> Result<()> {
    let tm = TaskManager::new(args)?;
    let workers = Arc::clone(&tm.workers);
    tm.shutdown_handle().on_signals(move |signal| {
        let mut workers = workers.lock().unwrap_or_else(PoisonError::into_inner);
        tracing::info!("{signal}: killing {} worker(s) and exiting", workers.len());
        workers.kill_all();
    })?;
    tm.run()
}

/// A task manager, ready to run.
#[derive(Debug)]
pub struct TaskManager {
    client: Client,
    slots: usize,
    host: String,
    artifacts: PathBuf,
    /// Where workers keep their local state, a directory per job.
    state: PathBuf,
    workers: Arc<Mutex<Workers>>,
    shutdown: Shutdown,
    give_up_after: Duration,
}

impl TaskManager {
    /// Checks the arguments and prepares the work directory.
    pub fn new(args: &TaskManagerArgs) -> Result<TaskManager> {
        if args.slots == 0 {
            return Err(ClusterError::Config(
                "a task manager needs at least 1 slot: pass --slots 1 or more".into(),
            ));
        }
        if args.host.trim().is_empty() {
            return Err(ClusterError::Config(
                "--host is empty: give the address workers listen on, like 127.0.0.1".into(),
            ));
        }
        let client = args.cluster.client()?;
        let artifacts = args.work_dir.join("artifacts");
        fs::create_dir_all(&artifacts).map_err(|e| {
            ClusterError::io(
                format!("cannot create {} (choose another --work-dir)", artifacts.display()),
                e,
            )
        })?;
        // Absolute, so that worker binaries are found whatever the workers' directory.
        let artifacts = artifacts
            .canonicalize()
            .map_err(|e| ClusterError::io(format!("cannot resolve {}", artifacts.display()), e))?;
        let state = args.work_dir.join("state");
        floe_runtime::private_dir(&state).map_err(|e| {
            ClusterError::io(
                format!("cannot create {} (choose another --work-dir)", state.display()),
                e,
            )
        })?;
        let state = state
            .canonicalize()
            .map_err(|e| ClusterError::io(format!("cannot resolve {}", state.display()), e))?;
        Ok(TaskManager {
            client,
            slots: args.slots,
            host: args.host.trim().to_owned(),
            artifacts,
            state,
            workers: Arc::default(),
            shutdown: Shutdown::new(),
            give_up_after: GIVE_UP_AFTER,
        })
    }

    /// Gives up after `limit` of failing to reach the job manager (default
    /// [`GIVE_UP_AFTER`]).
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = limit;
        self
    }

    /// The flag that stops [`TaskManager::run`] (its workers are then killed).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Registers and serves until stopped; kills every worker before returning.
    pub fn run(self) -> Result<()> {
        let result = self.serve();
        self.lock_workers().kill_all();
        result
    }

    fn lock_workers(&self) -> MutexGuard<'_, Workers> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self) -> Result<()> {
        loop {
            let Some(registration) = self.register()? else {
                return Ok(());
            };
            tracing::info!(
                "registered with {} as {} ({} slot(s), workers on {})",
                self.client.base_url(),
                registration.id,
                self.slots,
                self.host
            );
            if !self.heartbeats(&registration)? {
                return Ok(());
            }
        }
    }

    /// Registers, retrying while the job manager is unreachable; `None` once stopped.
    fn register(&self) -> Result<Option<RegisterResponse>> {
        let request = RegisterRequest {
            slots: self.slots,
            host: self.host.clone(),
            pid: std::process::id(),
        };
        let mut retry = Retry::new(self.give_up_after);
        loop {
            if self.shutdown.is_triggered() {
                return Ok(None);
            }
            match self.client.register(&request) {
                Ok(answer) => return Ok(Some(answer)),
                Err(e @ ClusterError::Unreachable { .. }) => {
                    if retry.failed(&e, &self.shutdown)? {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    return Err(ClusterError::Other(format!(
                        "the job manager refused the registration: {e}"
                    )))
                }
            }
        }
    }

    /// Heartbeats until stopped (`Ok(false)`) or until the job manager forgot this task
    /// manager (`Ok(true)`: register again).
    fn heartbeats(&self, registration: &RegisterResponse) -> Result<bool> {
        let interval_ms = registration.heartbeat_interval_ms.clamp(10, 60_000);
        let interval = Duration::from_millis(interval_ms);
        let mut retry = Retry::new(self.give_up_after);
        loop {
            if self.shutdown.is_triggered() {
                return Ok(false);
            }
            let workers = {
                let mut workers = self.lock_workers();
                for ((attempt, worker), state) in workers.reap() {
                    log_exit(attempt, worker, &state);
                }
                workers.statuses()
            };
            let heartbeat = Heartbeat {
                workers,
                wait_ms: interval_ms,
            };
            let sent = Instant::now();
            match self.client.heartbeat(&registration.id, &heartbeat) {
                Ok(answer) => {
                    retry.succeeded();
                    if self.shutdown.is_triggered() {
                        return Ok(false);
                    }
                    if answer.unknown {
                        let mut workers = self.lock_workers();
                        tracing::warn!(
                            "the job manager does not know {} (it restarted, or declared this \
                             task manager lost): killing {} worker(s) and registering again",
                            registration.id,
                            workers.len()
                        );
                        workers.kill_all();
                        return Ok(true);
                    }
                    let idle = answer.commands.is_empty();
                    for command in answer.commands {
                        self.execute(&registration.id, command);
                    }
                    // A job manager that answers at once with nothing must not make this a
                    // busy loop.
                    let elapsed = sent.elapsed();
                    if idle && elapsed < interval / 2 && self.shutdown.wait(interval - elapsed) {
                        return Ok(false);
                    }
                }
                Err(e) => {
                    if retry.failed(&e, &self.shutdown)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn execute(&self, tm: &str, command: TmCommand) {
        match command {
            TmCommand::Deploy { spec } => self.deploy(tm, &spec),
            TmCommand::Kill { attempt, worker } => {
                if self.lock_workers().kill(attempt, worker) {
                    tracing::info!("killed attempt {attempt} worker {worker}");
                }
            }
            TmCommand::Forget { attempt, worker } => {
                if !self.lock_workers().forget(attempt, worker) {
                    tracing::warn!("told to forget attempt {attempt} worker {worker}, which still runs");
                }
            }
        }
    }

    /// Starts a worker in the background: fetching a binary of hundreds of MB must not
    /// hold up the heartbeats (the job manager would declare this task manager lost).
    fn deploy(&self, tm: &str, spec: &WorkerSpec) {
        let (attempt, worker) = (spec.attempt, spec.worker);
        {
            let mut workers = self.lock_workers();
            if workers.contains(attempt, worker) {
                tracing::warn!("attempt {attempt} worker {worker} is already deployed here");
                return;
            }
            workers.add_starting(attempt, worker);
        }
        let deployer = Deployer {
            client: self.client.clone(),
            artifacts: self.artifacts.clone(),
            state: self.state.clone(),
            workers: Arc::clone(&self.workers),
            shutdown: self.shutdown.clone(),
        };
        let (tm, spec) = (tm.to_owned(), spec.clone());
        let started = std::thread::Builder::new()
            .name(format!("deploy-{attempt}-{worker}"))
            .spawn(move || deployer.deploy(&tm, &spec));
        if let Err(e) = started {
            let message = format!("could not start a deploy thread: {e}");
            self.lock_workers().add_failed(attempt, worker, message);
        }
    }
}

/// What a background deploy needs of its task manager.
struct Deployer {
    client: Client,
    artifacts: PathBuf,
    state: PathBuf,
    workers: Arc<Mutex<Workers>>,
    shutdown: Shutdown,
}

impl Deployer {
    fn deploy(&self, tm: &str, spec: &WorkerSpec) {
        let (attempt, worker) = (spec.attempt, spec.worker);
        let lock = || self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let launched = self.fetch(&spec.artifact).and_then(|program| {
            let launch = self.launch(program, spec)?;
            let mut workers = lock();
            // Killed (or the task manager stopping) while the binary was fetched.
            if self.shutdown.is_triggered() || !workers.is_starting(attempt, worker) {
                return Ok(());
            }
            let process = WorkerProcess::spawn(&launch)?;
            tracing::info!("{} started (pid {})", launch.label, process.pid());
            workers.add(attempt, worker, process);
            Ok(())
        });
        if let Err(e) = launched {
            let message = format!("task manager {tm} could not start the worker: {e}");
            tracing::error!("job {} attempt {attempt} worker {worker}: {message}", spec.job);
            let mut workers = lock();
            if workers.is_starting(attempt, worker) {
                workers.add_failed(attempt, worker, message);
            }
        }
    }

    /// The local copy of an artifact, downloaded if missing.
    fn fetch(&self, sha256: &str) -> Result<PathBuf> {
        check_sha256(sha256)?;
        let path = self.artifacts.join(sha256.to_ascii_lowercase());
        if !path.is_file() {
            tracing::info!("downloading artifact {sha256}");
            self.client.fetch_artifact(sha256, &path)?;
        }
        Ok(path)
    }

    fn launch(&self, program: PathBuf, spec: &WorkerSpec) -> Result<Launch> {
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| ClusterError::Other(format!("cannot encode the worker spec: {e}")))?;
        // The worker's own state directory, private to this user, named by the job's id.
        if spec.job.is_empty()
            || !spec
                .job
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ClusterError::Other(format!(
                "job id {:?} cannot name a state directory",
                spec.job
            )));
        }
        let state = self.state.join(&spec.job);
        floe_runtime::private_dir(&state)
            .map_err(|e| ClusterError::io(format!("cannot create the state directory {}", state.display()), e))?;
        // The attempt's credential, never the task manager's token (which the worker would
        // otherwise inherit with the rest of the environment): it opens only the endpoints
        // of the worker's own attempt.
        let env = vec![
            (WORKER_SPEC_ENV.to_owned(), spec_json),
            (JOB_MANAGER_ENV.to_owned(), self.client.base_url().to_owned()),
            (TOKEN_ENV.to_owned(), spec.token.0.clone()),
            (WORKER_STATE_DIR_ENV.to_owned(), state.to_string_lossy().into_owned()),
        ];
        let mut env = env;
        if let Some(ca) = self.client.ca_cert() {
            // Absolute: workers run in a directory of their own.
            let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.to_path_buf());
            env.push((CA_CERT_ENV.to_owned(), ca.to_string_lossy().into_owned()));
        }
        // The job's arguments travel in the spec (the environment, private to this user),
        // not on the command line, which every user of the machine can read.
        Ok(Launch {
            program,
            args: vec!["worker".to_owned()],
            env,
            label: format!("[{} attempt {} worker {}]", spec.job, spec.attempt, spec.worker),
            forward_stderr: true,
        })
    }
}

fn log_exit(attempt: u64, worker: usize, state: &WorkerState) {
    if let WorkerState::Exited { code, .. } = state {
        match code {
            Some(code) => {
                tracing::info!("attempt {attempt} worker {worker} exited with code {code}")
            }
            None => tracing::info!("attempt {attempt} worker {worker} was killed by a signal"),
        }
    }
}

/// A streak of failures to reach the job manager: logged once, retried with a growing
/// wait, given up after a limit.
#[derive(Debug)]
struct Retry {
    limit: Duration,
    since: Option<Instant>,
    backoff: Duration,
}

impl Retry {
    fn new(limit: Duration) -> Retry {
        Retry {
            limit,
            since: None,
            backoff: FIRST_BACKOFF,
        }
    }

    fn succeeded(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                "the job manager answers again (after {:.1} s)",
                since.elapsed().as_secs_f64()
            );
        }
        self.backoff = FIRST_BACKOFF;
    }

    /// Records a failure and waits before the next try. `Ok(true)`: stopped meanwhile;
    /// an error once failures lasted longer than the limit.
    fn failed(&mut self, error: &ClusterError, shutdown: &Shutdown) -> Result<bool> {
        let since = *self.since.get_or_insert_with(|| {
            tracing::warn!(
                "{error}; retrying (workers keep running) for up to {} s",
                self.limit.as_secs()
            );
            Instant::now()
        });
        if since.elapsed() >= self.limit {
            return Err(ClusterError::Other(format!(
                "gave up after {} s of failing to reach the job manager ({error}); its \
                 workers were killed",
                self.limit.as_secs()
            )));
        }
        let stopped = shutdown.wait(self.backoff.min(self.limit.saturating_sub(since.elapsed())));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(stopped)
    }
}
