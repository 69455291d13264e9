//! A cluster of real processes: `floe jobmanager` on a free loopback port and `floe
//! taskmanager`s registered with it, each killed when the test ends (or panics).
//!
//! For the job manager's logic over HTTP without processes, tests start it in process
//! (`floe_cluster::jobmanager::JobManager::start`) instead; for its decisions without HTTP,
//! `runtime/cluster/src/jobmanager/cluster_tests.rs` drives the state machine directly.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use floe_cluster::client::Client;
use floe_cluster::jobmanager::TlsFiles;
use floe_cluster::protocol::{JobDetail, JobState};

use crate::process::{floe_bin, Proc};
use crate::wait::{wait_for, DEADLINE};

/// The token of a cluster started with a fixed token.
pub const TOKEN: &str = "test-token-0123456789";

/// How long a [`Cluster`]'s job manager waits for a heartbeat before it declares a task
/// manager lost, unless told otherwise. The product's 3 s is a wall-clock bet a loaded test
/// machine loses (12 s without a heartbeat from a live task manager was seen at a load
/// average of 60 on two cores), and a task manager declared lost restarts the job: a test
/// that kills none then fails for nothing. A killed task manager is still found lost, this
/// much later, well inside the deadlines of the tests that kill one.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(20);

/// How a [`Cluster`]'s job manager is started.
#[derive(Clone, Copy, Debug)]
pub struct ClusterOptions {
    /// Serve HTTPS with a fresh self-signed certificate that every client is told to trust.
    pub tls: bool,
    /// Let the job manager make its token up in its data directory (clients and task
    /// managers read the token file) instead of giving it [`TOKEN`].
    pub generated_token: bool,
    /// The job manager's `--heartbeat-timeout-ms` (task managers beat every 300 ms).
    pub heartbeat_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            tls: false,
            generated_token: false,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
        }
    }
}

/// A job manager and its task managers, all real `floe` processes.
#[derive(Debug)]
pub struct Cluster {
    /// The job manager process.
    pub jm: Proc,
    /// Its base URL (`http://` or `https://127.0.0.1:<port>`).
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// The task manager processes, in the order they were started.
    pub tms: Vec<Proc>,
    /// HTTPS: the job manager's certificate (trusted by everyone as their CA) and key.
    pub tls: Option<TlsFiles>,
    options: ClusterOptions,
    dir: PathBuf,
}

impl Cluster {
    /// A job manager (data in `dir/jm`) and one task manager per entry of `slots` (work
    /// directories `dir/tm<n>`), once they have all registered.
    pub fn start(dir: &Path, slots: &[usize]) -> Cluster {
        Self::start_with(dir, slots, ClusterOptions::default())
    }

    /// The same over HTTPS, with a self-signed certificate every client is told to trust.
    pub fn start_tls(dir: &Path, slots: &[usize]) -> Cluster {
        Self::start_with(
            dir,
            slots,
            ClusterOptions {
                tls: true,
                ..ClusterOptions::default()
            },
        )
    }

    /// The same with `options`.
    pub fn start_with(dir: &Path, slots: &[usize], options: ClusterOptions) -> Cluster {
        let tls = options
            .tls
            .then(|| TlsFiles::self_signed(dir).expect("a test certificate (the openssl command)"));
        let (jm, url) = start_job_manager(dir, "127.0.0.1:0", tls.as_ref(), options);
        let token = match options.generated_token {
            false => TOKEN.to_string(),
            true => std::fs::read_to_string(dir.join("jm").join("token"))
                .expect("the job manager's token file")
                .trim()
                .to_string(),
        };
        let mut c = Cluster {
            jm,
            url,
            token,
            tms: Vec::new(),
            tls,
            options,
            dir: dir.to_path_buf(),
        };
        for s in slots {
            c.add_task_manager(*s);
        }
        c.wait_task_managers(slots.len());
        c
    }

    /// Kills the job manager (SIGKILL) and starts it again on the same address and data.
    pub fn restart_job_manager(&mut self) {
        let bind = self.url.split("://").nth(1).unwrap_or(&self.url).to_string();
        self.jm.kill();
        let (jm, url) = start_job_manager(&self.dir, &bind, self.tls.as_ref(), self.options);
        assert_eq!(url, self.url, "the job manager came back on its address");
        self.jm = jm;
    }

    /// Starts one more task manager (work directory `dir/tm<n>`, log filter from
    /// `FLOE_TEST_LOG`, default `warn`, on the test's stderr); it registers on its own
    /// ([`wait_task_managers`](Self::wait_task_managers) waits for that).
    pub fn add_task_manager(&mut self, slots: usize) {
        self.start_task_manager(slots, None, Stdio::inherit());
    }

    /// The same with its stderr (its own lines and its workers', each labelled `[<job>
    /// attempt <a> worker <w>]`) in the file `log`, filtered by `filter` (a `RUST_LOG`
    /// value; `None`: `FLOE_TEST_LOG`, default `warn`), for a test that reads what the
    /// workers said.
    pub fn add_task_manager_logged(&mut self, slots: usize, log: &Path, filter: Option<&str>) {
        let file = std::fs::File::create(log).expect("create the task manager's log");
        self.start_task_manager(slots, filter, Stdio::from(file));
    }

    fn start_task_manager(&mut self, slots: usize, filter: Option<&str>, stderr: Stdio) {
        let n = self.tms.len();
        let filter = filter
            .map(str::to_string)
            .unwrap_or_else(|| std::env::var("FLOE_TEST_LOG").unwrap_or_else(|_| "warn".into()));
        let child = Command::new(floe_bin())
            .arg("taskmanager")
            .args(self.connection_args())
            .args(["--slots", &slots.to_string()])
            .arg("--work-dir")
            .arg(self.dir.join(format!("tm{n}")))
            .env("RUST_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start floe taskmanager");
        self.tms.push(Proc(child));
    }

    /// Waits until `n` task managers are registered.
    pub fn wait_task_managers(&self, n: usize) {
        let client = self.client();
        wait_for(&format!("{n} task managers to register"), DEADLINE, || {
            client.taskmanagers().ok().filter(|t| t.len() == n)
        });
    }

    /// A client of the job manager.
    pub fn client(&self) -> Client {
        let ca = self.tls.as_ref().map(|t| t.cert.clone());
        Client::with_ca_cert(self.url.clone(), Some(self.token.clone()), ca).expect("a client of the job manager")
    }

    /// `--ca-cert <file>` when the cluster serves HTTPS: for the CLI and job binaries.
    pub fn ca_args(&self) -> Vec<OsString> {
        match &self.tls {
            Some(tls) => vec!["--ca-cert".into(), tls.cert.clone().into()],
            None => Vec::new(),
        }
    }

    /// The job manager's token file (a cluster started with `generated_token`).
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("jm").join("token")
    }

    /// `--job-manager <url>`, the token (`--token-file` when the job manager made it up,
    /// else `--token`) and `--ca-cert` when the cluster serves HTTPS: what a `floe` command
    /// or a task manager needs to reach the job manager.
    pub fn connection_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--job-manager".into(), self.url.clone().into()];
        if self.options.generated_token {
            args.extend(["--token-file".into(), self.token_file().into()]);
        } else {
            args.extend(["--token".into(), self.token.clone().into()]);
        }
        args.extend(self.ca_args());
        args
    }

    /// Waits until the job's detail satisfies `ok`; fails at once if the job fails.
    pub fn wait_job(&self, id: &str, what: &str, timeout: Duration, ok: impl Fn(&JobDetail) -> bool) -> JobDetail {
        let client = self.client();
        wait_for(what, timeout, || {
            let d = client.job(id).ok()?;
            assert!(
                d.summary.state != JobState::Failed,
                "the job failed while waiting for {what}: {:?}",
                d.exceptions
            );
            ok(&d).then_some(d)
        })
    }
}

/// A job "binary" for cluster tests: a `sh` script running `body` with `$arg1` set to the
/// job's first argument (task managers start every worker as `<binary> worker` and pass the
/// job's arguments in its spec, `FLOE_WORKER_SPEC`, never on the command line). Without an
/// argument the script fails (exit 64) rather than write to `/`.
///
/// ```
/// let script = floe_testkit::cluster::worker_script("echo $$ > \"$arg1/pid\"\n");
/// assert!(script.starts_with("#!/bin/sh\n") && script.ends_with("$arg1/pid\"\n"));
/// ```
pub fn worker_script(body: &str) -> String {
    format!(
        "#!/bin/sh\n\
         arg1=$(printf '%s' \"$FLOE_WORKER_SPEC\" | sed -n 's/.*\"args\":\\[\"\\([^\"]*\\)\".*/\\1/p')\n\
         [ -n \"$arg1\" ] || {{ echo 'test worker: no job argument in FLOE_WORKER_SPEC' >&2; exit 64; }}\n\
         {body}"
    )
}

/// Starts `floe jobmanager` on `bind` with its data in `dir/jm`; returns it and its URL once
/// it said where it listens.
fn start_job_manager(dir: &Path, bind: &str, tls: Option<&TlsFiles>, options: ClusterOptions) -> (Proc, String) {
    let mut command = Command::new(floe_bin());
    command
        .args(["jobmanager", "--bind", bind])
        .args(["--heartbeat-interval-ms", "300", "--heartbeat-timeout-ms"])
        .arg(options.heartbeat_timeout.as_millis().to_string())
        .arg("--data-dir")
        .arg(dir.join("jm"));
    if !options.generated_token {
        command.args(["--token", TOKEN]);
    }
    if let Some(tls) = tls {
        command.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key);
    }
    let mut child = command
        .env("RUST_LOG", "info")
        .env_remove("FLOE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start floe jobmanager");
    let stdout = child.stdout.take().expect("a piped stdout");
    let process = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the job manager ended before saying where it listens")
            .expect("the job manager's stdout");
        if let Some(url) = line.strip_prefix("floe job manager listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep reading its stdout so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (process, url)
}
