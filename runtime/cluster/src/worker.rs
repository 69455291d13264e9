//! The worker side of an attempt: a job binary started by a task manager in `worker` mode
//! binds its data port, says hello to the job manager, waits for its peers, runs its
//! subtasks with the runtime (connected to the other workers over TCP), and reports to the
//! job manager: that it runs (worker 0 with the graph), its metrics every second, completed
//! checkpoints and savepoints (worker 0), and how it ended. Worker 0 also takes the job
//! manager's savepoint commands.
//!
//! A worker ends when its task manager does: the task manager holds the worker's stdin, and
//! its end (the task manager died, even by SIGKILL) ends the worker at once, in whatever
//! state it is (see [`watch_parent`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_runtime::{CheckpointEvent, JobControl, JobHandle, JobResult, Placement};
use tracing::{info, warn};

use crate::client::Client;
use crate::protocol::{
    OperatorMetrics, WorkerCommand, WorkerEvent, WorkerHello, WorkerSpec, CA_CERT_ENV, JOB_MANAGER_ENV, TOKEN_ENV,
    WORKER_SPEC_ENV,
};
use crate::taskmanager::Shutdown;
use crate::{ClusterError, Result};

/// The job manager this worker reports to, from the environment its task manager set.
fn job_manager() -> Result<Client> {
    let base = std::env::var(JOB_MANAGER_ENV).map_err(|_| {
        ClusterError::Config(format!(
            "{JOB_MANAGER_ENV} is not set: workers are started by `floe taskmanager`, not by hand"
        ))
    })?;
    Client::with_ca_cert(
        base,
        std::env::var(TOKEN_ENV).ok(),
        std::env::var_os(CA_CERT_ENV).map(std::path::PathBuf::from),
    )
}

/// The worker spec this process was started with, if it was started as a worker.
pub fn spec_from_env() -> Result<Option<WorkerSpec>> {
    match std::env::var(WORKER_SPEC_ENV) {
        Err(_) => Ok(None),
        Ok(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| ClusterError::Config(format!("{WORKER_SPEC_ENV} is not a worker spec: {e}"))),
    }
}

/// A worker that has met its peers and is ready to run its subtasks.
pub struct Worker {
    spec: WorkerSpec,
    jm: Client,
    placement: Arc<Placement>,
}

impl Worker {
    /// Binds the data port, says hello and waits (up to a minute) for every peer's address.
    /// Also ends the process when the task manager's end of stdin closes (if nothing
    /// called [`watch_parent`] earlier).
    pub fn join(spec: WorkerSpec) -> Result<Worker> {
        let jm = job_manager()?;
        watch_parent();
        let listener = TcpListener::bind((spec.host.as_str(), 0))
            .map_err(|e| ClusterError::io(format!("listening for data on {}", spec.host), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClusterError::io("reading the data port", e))?;
        jm.worker_hello(spec.attempt, spec.worker, &WorkerHello { addr: addr.to_string() })?;
        info!(attempt = spec.attempt, worker = spec.worker, %addr, "worker listening; waiting for peers");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addrs = loop {
            let p = jm.peers(spec.attempt, Duration::from_secs(1))?;
            if p.cancelled {
                return Err(ClusterError::Other(format!("attempt {} was cancelled", spec.attempt)));
            }
            if let Some(a) = p.addrs {
                break a;
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Other(format!(
                    "the other workers of attempt {} did not start within a minute",
                    spec.attempt
                )));
            }
        };
        let peers = addrs
            .iter()
            .map(|a| {
                a.to_socket_addrs()
                    .ok()
                    .and_then(|mut i| i.next())
                    .ok_or_else(|| ClusterError::Other(format!("peer address `{a}` does not resolve")))
            })
            .collect::<Result<Vec<SocketAddr>>>()?;
        let placement = Arc::new(Placement::new(
            spec.attempt,
            spec.worker,
            spec.placement.clone(),
            listener,
            peers,
            spec.secret.clone(),
        ));
        Ok(Worker { spec, jm, placement })
    }

    /// Where this worker's subtasks run and how to reach the others: for
    /// `ExecutionConfig::placement`.
    pub fn placement(&self) -> Arc<Placement> {
        self.placement.clone()
    }

    /// Reports the running job to the job manager until it ends, and how it ended.
    pub fn run(self, handle: JobHandle, graph: Option<serde_json::Value>) -> Result<JobResult> {
        let (attempt, worker) = (self.spec.attempt, self.spec.worker);
        let control = handle.control();
        self.jm.post_events(
            attempt,
            &[WorkerEvent::Running {
                worker,
                graph: if worker == 0 { graph } else { None },
            }],
        )?;
        let done = Shutdown::new();
        let reporter = {
            let (jm, control, done) = (self.jm.clone(), control.clone(), done.clone());
            std::thread::Builder::new()
                .name("jm-reports".into())
                .spawn(move || report_loop(&jm, attempt, worker, &control, &done))
                .map_err(|e| ClusterError::io("spawning the report thread", e))?
        };
        if worker == 0 {
            let (jm, control, done) = (self.jm.clone(), control.clone(), done.clone());
            std::thread::Builder::new()
                .name("jm-commands".into())
                .spawn(move || command_loop(&jm, attempt, &control, &done))
                .map_err(|e| ClusterError::io("spawning the command thread", e))?;
        }
        let result = handle.join();
        done.trigger();
        let _ = reporter.join();
        let end = match &result {
            Ok(_) => WorkerEvent::Finished { worker },
            Err(e) => WorkerEvent::Failed {
                worker,
                error: e.to_string(),
            },
        };
        if let Err(e) = self.jm.post_events(attempt, &[end]) {
            warn!(error = %e, "could not tell the job manager how this worker ended");
        }
        Ok(result?)
    }
}

/// Ends the process when its stdin closes, i.e. when the task manager that started it is
/// gone (the task manager holds the other end for the worker's life, and the kernel closes
/// it however the task manager ends, SIGKILL included). Starts the watch once per process;
/// job binaries call it as soon as they know they run as a worker, before building their
/// job, so a worker never outlives its task manager whatever it is doing (deploying,
/// running, checkpointing, or stuck on an unreachable broker).
///
/// The end is `_exit` from the watching thread: no destructors or exit handlers run (they
/// could block on locks the job's threads hold, or on a closed stderr), and nothing here
/// can panic: a panic would end only this thread and leave the worker running, orphaned.
pub fn watch_parent() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("parent-watch".into()).spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // The task manager's stderr pipe may be gone too: a failed write is ignored.
            let _ = writeln!(
                std::io::stderr(),
                "worker: the task manager is gone (stdin closed); exiting"
            );
            signal_hook::low_level::exit(PARENT_GONE_EXIT_CODE);
        });
        if let Err(e) = spawned {
            // Without the watch this worker could outlive its task manager: better not run.
            let _ = writeln!(
                std::io::stderr(),
                "worker: cannot watch the task manager ({e}); exiting"
            );
            signal_hook::low_level::exit(PARENT_GONE_EXIT_CODE);
        }
    });
}

/// The exit code of a worker whose task manager went away.
pub const PARENT_GONE_EXIT_CODE: i32 = 3;

/// Savepoints asked for, by directory, waiting for the coordinator to write them.
type Asked = std::sync::Mutex<HashMap<std::path::PathBuf, u64>>;

fn asked() -> &'static Asked {
    static ASKED: std::sync::OnceLock<Asked> = std::sync::OnceLock::new();
    ASKED.get_or_init(Default::default)
}

/// The checkpoint events completed since the last call, as the job manager takes them.
fn checkpoint_events(control: &JobControl) -> Vec<WorkerEvent> {
    control
        .take_checkpoint_events()
        .into_iter()
        .filter_map(|e| match e {
            CheckpointEvent::Completed {
                id,
                bytes,
                duration_ms,
                is_savepoint,
            } => Some(WorkerEvent::CheckpointCompleted {
                id,
                bytes,
                duration_ms,
                is_savepoint,
            }),
            CheckpointEvent::Savepoint { dir, id } => {
                // Savepoints the job manager did not ask for (none today) are not reported.
                let request = asked().lock().ok().and_then(|mut a| a.remove(&dir))?;
                Some(WorkerEvent::SavepointCompleted {
                    request,
                    dir: dir.to_string_lossy().into_owned(),
                    checkpoint: id,
                })
            }
            CheckpointEvent::Failed { id, reason } => {
                warn!(checkpoint = id, %reason, "checkpoint failed");
                Some(WorkerEvent::CheckpointFailed { id, reason })
            }
        })
        .collect()
}

fn report_loop(jm: &Client, attempt: u64, worker: usize, control: &JobControl, done: &Shutdown) {
    let mut rates = Rates::default();
    loop {
        let mut events = checkpoint_events(control);
        events.push(WorkerEvent::Metrics {
            worker,
            prometheus: floe_runtime::metrics::Registry::global().render_prometheus(),
            operators: rates.update(),
        });
        if let Err(e) = jm.post_events(attempt, &events) {
            warn!(error = %e, "could not report to the job manager");
        }
        if done.wait(Duration::from_secs(1)) {
            // One last report of what completed (a final checkpoint, a savepoint).
            let last = checkpoint_events(control);
            if !last.is_empty() {
                let _ = jm.post_events(attempt, &last);
            }
            return;
        }
    }
}

fn command_loop(jm: &Client, attempt: u64, control: &JobControl, done: &Shutdown) {
    while !done.is_triggered() {
        let commands = match jm.commands(attempt, Duration::from_secs(1)) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "could not read commands from the job manager");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        for c in commands {
            match c {
                WorkerCommand::Savepoint { request, dir, stop } => {
                    let dir = std::path::PathBuf::from(dir);
                    if let Ok(mut a) = asked().lock() {
                        a.insert(dir.clone(), request);
                    }
                    info!(request, dir = %dir.display(), stop, "savepoint asked for by the job manager");
                    if stop {
                        control.stop_with_savepoint(dir);
                    } else {
                        control.trigger_savepoint(dir);
                    }
                }
                WorkerCommand::Checkpoint => {
                    // The coordinator takes one as soon as none is in flight.
                    control.trigger_checkpoint();
                }
            }
        }
    }
}

/// Per-operator figures of this worker, with rates from the previous report.
#[derive(Default)]
struct Rates {
    last: HashMap<usize, (u64, u64)>,
    at: Option<Instant>,
}

impl Rates {
    fn update(&mut self) -> Vec<OperatorMetrics> {
        let now = Instant::now();
        let secs = self.at.map(|a| (now - a).as_secs_f64()).filter(|s| *s > 0.0);
        self.at = Some(now);
        let mut by_node: std::collections::BTreeMap<usize, OperatorMetrics> = Default::default();
        for f in floe_runtime::metrics::operators() {
            let m = by_node.entry(f.node).or_insert_with(|| OperatorMetrics {
                node: f.node,
                name: f.operator.clone(),
                ..Default::default()
            });
            m.records_in += f.records_in;
            m.records_out += f.records_out;
            m.backpressure = m.backpressure.max(f.backpressure);
            m.watermark = match (m.watermark, f.watermark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        for m in by_node.values_mut() {
            let (pin, pout) = self.last.get(&m.node).copied().unwrap_or((m.records_in, m.records_out));
            if let Some(s) = secs {
                m.records_in_per_sec = m.records_in.saturating_sub(pin) as f64 / s;
                m.records_out_per_sec = m.records_out.saturating_sub(pout) as f64 / s;
            }
            self.last.insert(m.node, (m.records_in, m.records_out));
        }
        by_node.into_values().collect()
    }
}
