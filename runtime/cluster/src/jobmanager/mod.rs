//! The job manager (`floe jobmanager`): it stores job binaries, keeps jobs on disk, places
//! their subtasks on task managers' slots, restarts failed attempts from their newest
//! checkpoint, takes savepoints, and serves the REST API of [`crate::protocol`], Prometheus
//! `/metrics` and the web page.
//!
//! Layout: [`JobManagerArgs`] and [`JobManager`] here; the state machine in `cluster` and
//! `workers` (pure, unit-tested), placement in `placement`, records in `model`, files in
//! `store`, the token in `token`, the HTTP layer in `server`, `api`, `shared`, `jobs_api`,
//! `internal` and `artifacts`, HTTPS in `tls`, figures in `metrics`.

mod api;
mod artifacts;
mod cluster;
mod internal;
mod jobs_api;
mod metrics;
mod model;
mod placement;
mod server;
mod shared;
mod store;
mod tls;
mod token;
mod workers;

#[cfg(test)]
mod cluster_tests;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ClusterError, Result};

use cluster::{Cluster, ClusterConfig};
use shared::Shared;
use store::Store;
use token::TokenSource;

pub use tls::TlsFiles;

/// How long a savepoint may take before its request fails.
const SAVEPOINT_TIMEOUT_MS: u64 = 120_000;
/// After a stop's savepoint, how long workers get to exit before they are killed.
const STOP_GRACE_MS: u64 = 10_000;
/// How long in-flight requests get to end at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `floe jobmanager`: run a job manager.
#[derive(Clone, Debug, clap::Args)]
pub struct JobManagerArgs {
    /// Address to serve the REST API, the metrics and the web page on. Anything but a
    /// loopback address exposes the cluster to the network (the token is then all that
    /// protects it, and it travels unencrypted).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub bind: String,
    /// Directory for artifacts, job records, checkpoints, savepoints and the token.
    #[arg(long, default_value = "./floe-jm")]
    pub data_dir: PathBuf,
    /// Bearer token clients, task managers and workers must send; defaults to the content of
    /// `<data-dir>/token`, made up (random) on first start.
    #[arg(long, env = "FLOE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Largest job binary accepted, in MB.
    #[arg(long, default_value_t = 512)]
    pub max_upload_mb: u64,
    /// How often task managers send heartbeats, in ms.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_interval_ms: u64,
    /// A task manager silent for this long (ms) is considered lost; its workers' attempts
    /// restart elsewhere.
    #[arg(long, default_value_t = 3000)]
    pub heartbeat_timeout_ms: u64,
    /// An attempt whose workers are not all running this long (ms) after deployment fails
    /// and restarts by the job's restart strategy.
    #[arg(long, default_value_t = 120_000)]
    pub deploy_timeout_ms: u64,
    /// Serve HTTPS with this certificate (PEM, with any intermediates after it); needs
    /// --tls-key. Clients that do not trust its issuer take `--ca-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, PKCS#8).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl JobManagerArgs {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<JobManagerConfig> {
        let bind = self
            .bind
            .to_socket_addrs()
            .map_err(|e| {
                ClusterError::Config(format!(
                    "--bind {}: {e}; give host:port, e.g. 127.0.0.1:8081",
                    self.bind
                ))
            })?
            .next()
            .ok_or_else(|| ClusterError::Config(format!("--bind {} resolves to no address", self.bind)))?;
        if self.max_upload_mb == 0 {
            return Err(ClusterError::Config("--max-upload-mb must be at least 1".into()));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ClusterError::Config(format!(
                "--heartbeat-timeout-ms ({}) must be longer than --heartbeat-interval-ms ({}), which must be at least 1",
                self.heartbeat_timeout_ms, self.heartbeat_interval_ms
            )));
        }
        if self.deploy_timeout_ms < 1000 {
            return Err(ClusterError::Config(format!(
                "--deploy-timeout-ms ({}) must be at least 1000: workers need time to fetch the job binary and start",
                self.deploy_timeout_ms
            )));
        }
        Ok(JobManagerConfig {
            bind,
            data_dir: self.data_dir.clone(),
            token: self.token.clone(),
            max_upload_bytes: self.max_upload_mb.saturating_mul(1 << 20),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
            deploy_timeout_ms: self.deploy_timeout_ms,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (None, None) => None,
                _ => {
                    return Err(ClusterError::Config(
                        "--tls-cert and --tls-key go together: give both, or neither for plain HTTP".into(),
                    ))
                }
            },
        })
    }
}

/// Everything a job manager needs to start.
#[derive(Clone, Debug)]
pub struct JobManagerConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The token; `None`: from `<data-dir>/token`, made up if missing.
    pub token: Option<String>,
    /// Largest artifact accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Heartbeat interval told to task managers (ms).
    pub heartbeat_interval_ms: u64,
    /// Silence after which a task manager is lost (ms).
    pub heartbeat_timeout_ms: u64,
    /// From deployment to all of an attempt's workers running, at most (ms).
    pub deploy_timeout_ms: u64,
    /// HTTPS: the certificate and key; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl JobManagerConfig {
    /// Defaults, listening on a free port of 127.0.0.1, with its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        JobManagerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            token: None,
            max_upload_bytes: 512 << 20,
            heartbeat_interval_ms: 500,
            heartbeat_timeout_ms: 3000,
            deploy_timeout_ms: 120_000,
            tls: None,
        }
    }
}

/// Starts job managers.
pub struct JobManager;

impl JobManager {
    /// Loads the data directory, binds, and serves on a thread of its own (with its own
    /// tokio runtime) until [`RunningJobManager::shutdown`] or drop.
    pub fn start(config: JobManagerConfig) -> Result<RunningJobManager> {
        // A certificate that does not load stops the start, before anything else.
        let acceptor = config.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        let store = Store::open(&config.data_dir)?;
        let (token, token_source) = token::load_or_create(store.root(), config.token.as_deref())?;
        let state = store.load_state()?;
        let jobs = store.load_jobs()?;
        let cluster = Cluster::restore(
            ClusterConfig {
                data_dir: store.root().to_path_buf(),
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                heartbeat_timeout_ms: config.heartbeat_timeout_ms,
                savepoint_timeout_ms: SAVEPOINT_TIMEOUT_MS,
                stop_grace_ms: STOP_GRACE_MS,
                deploy_timeout_ms: config.deploy_timeout_ms,
                attempt_key: floe_runtime::AttemptSecret::random()?,
            },
            state,
            jobs,
            shared::now_ms(),
        );
        let data_dir = store.root().to_path_buf();
        let shared = Arc::new(Shared::new(cluster, store, token.clone(), config.max_upload_bytes));
        shared.inspect(|_| ());

        let listener =
            TcpListener::bind(config.bind).map_err(|e| ClusterError::io(format!("binding {}", config.bind), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ClusterError::io("configuring the listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClusterError::io("reading the bound address", e))?;
        if !addr.ip().is_loopback() && acceptor.is_none() {
            tracing::warn!(
                "the job manager listens on {addr}, reachable from the network, without TLS: \
                 anyone who can reach it and knows the token can run code on the task managers, \
                 and the token travels unencrypted (give --tls-cert and --tls-key)"
            );
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("floe-jm")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::io("starting the job manager's runtime", e))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("floe-jobmanager".into())
            .spawn(move || serve(runtime, listener, acceptor, serving, stop_rx))
            .map_err(|e| ClusterError::io("starting the job manager's thread", e))?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        Ok(RunningJobManager {
            url: format!("{scheme}://{addr}"),
            token,
            token_source,
            data_dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

fn serve(
    runtime: tokio::runtime::Runtime,
    listener: TcpListener,
    acceptor: Option<tokio_native_tls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let ticking = tokio::spawn(server::tick_loop(shared.clone()));
        let result = match acceptor {
            Some(acceptor) => serve_on(tls::TlsListener::new(listener, acceptor)?, shared, stop).await,
            None => serve_on(listener, shared, stop).await,
        };
        ticking.abort();
        result
    });
    if let Err(e) = served {
        tracing::error!("the job manager's server failed: {e}");
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// Serves the API on `listener` until `stop`, then for a bounded grace.
async fn serve_on<L>(listener: L, shared: Arc<Shared>, stop: tokio::sync::oneshot::Receiver<()>) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let app = server::router(shared.clone());
    let signal_shared = shared.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.await;
        signal_shared.mutate(|c, _| c.shutting_down = true);
    });
    tokio::select! {
        r = async move { server.await } => r,
        () = async {
            // Bounded grace once shutdown began.
            while !shared.inspect(|c| c.shutting_down) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

/// A job manager serving on its own thread.
pub struct RunningJobManager {
    url: String,
    token: String,
    token_source: TokenSource,
    data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningJobManager {
    /// Its base URL, e.g. `http://127.0.0.1:8081`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bearer token it requires.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Its data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops serving and waits for the server thread to end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningJobManager {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Runs a job manager until Ctrl-C or SIGTERM.
pub fn run(args: &JobManagerArgs) -> Result<()> {
    let config = args.config()?;
    if !config.bind.ip().is_loopback() && config.tls.is_none() {
        eprintln!(
            "warning: --bind {} is reachable from the network; anyone who can reach it and \
             knows the token can run code on the task managers, and the token travels \
             unencrypted (give --tls-cert and --tls-key)",
            config.bind
        );
    }
    let jm = JobManager::start(config)?;
    println!("floe job manager listening on {}", jm.url());
    println!("web page: {}/", jm.url());
    match &jm.token_source {
        TokenSource::Given => println!("token: as given by --token / FLOE_TOKEN"),
        TokenSource::File(path) => println!(
            "token: in {} (export FLOE_TOKEN=$(cat {}))",
            path.display(),
            path.display()
        ),
    }
    println!("data directory: {}", jm.data_dir().display());
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClusterError::io("starting the signal handler", e))?;
    waiter.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| ClusterError::io("listening for SIGTERM", e))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(|e| ClusterError::io("listening for Ctrl-C", e)),
            _ = term.recv() => Ok(()),
        }
    })?;
    println!("shutting down");
    jm.shutdown();
    Ok(())
}

#[cfg(test)]
mod args_tests {
    use clap::Parser;

    use super::JobManagerArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: JobManagerArgs,
    }

    fn config(argv: &[&str]) -> Result<super::JobManagerConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("jobmanager").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.config().map_err(|e| e.to_string())
    }

    #[test]
    fn bad_timeouts_say_what_to_change() {
        let ok = config(&[]).unwrap();
        assert_eq!(ok.deploy_timeout_ms, 120_000);
        assert_eq!(
            config(&["--deploy-timeout-ms", "5000"]).unwrap().deploy_timeout_ms,
            5000
        );
        let err = config(&["--deploy-timeout-ms", "10"]).unwrap_err();
        assert!(err.contains("--deploy-timeout-ms (10) must be at least 1000"), "{err}");
        let err = config(&["--heartbeat-interval-ms", "500", "--heartbeat-timeout-ms", "400"]).unwrap_err();
        assert!(err.contains("--heartbeat-timeout-ms (400) must be longer"), "{err}");
    }
}
