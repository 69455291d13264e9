//! A cluster of real processes for tests: `floe jobmanager` and `floe taskmanager`s on
//! loopback, each killed when the test ends (or panics).
#![allow(dead_code)] // each test uses its own subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floe_cluster::client::Client;
use floe_cluster::jobmanager::TlsFiles;
use floe_cluster::protocol::{JobDetail, JobState};

/// The `floe` binary, built next to this crate's binaries by `cargo test --workspace`.
pub fn floe_bin() -> PathBuf {
    let fraud = PathBuf::from(env!("CARGO_BIN_EXE_fraud"));
    let floe = fraud.with_file_name("floe");
    assert!(
        floe.exists(),
        "{} is missing: build it with `cargo build -p floe-dsl --bin floe` (cargo test --workspace does)",
        floe.display()
    );
    floe
}

/// A child process killed (SIGKILL) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A job manager and its task managers.
#[allow(dead_code)] // each test uses its own subset
pub struct Cluster {
    pub jm: Proc,
    pub url: String,
    pub token: String,
    pub tms: Vec<Proc>,
    /// HTTPS: the job manager's certificate (trusted by everyone as their CA) and key.
    pub tls: Option<TlsFiles>,
    dir: PathBuf,
}

pub const TOKEN: &str = "test-token-0123456789";

/// Starts `floe jobmanager` on a free port with its data in `dir/jm`.
pub fn start_job_manager(dir: &Path) -> (Proc, String) {
    start_job_manager_at(dir, "127.0.0.1:0", None)
}

/// Starts `floe jobmanager` on `bind` with its data in `dir/jm`, serving HTTPS with `tls`.
pub fn start_job_manager_at(dir: &Path, bind: &str, tls: Option<&TlsFiles>) -> (Proc, String) {
    let mut command = Command::new(floe_bin());
    command
        .args(["jobmanager", "--bind", bind, "--token", TOKEN])
        .args(["--heartbeat-interval-ms", "300", "--heartbeat-timeout-ms", "3000"])
        .arg("--data-dir")
        .arg(dir.join("jm"));
    if let Some(tls) = tls {
        command.arg("--tls-cert").arg(&tls.cert).arg("--tls-key").arg(&tls.key);
    }
    let mut child = command
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start floe jobmanager");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the job manager ended before saying where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("floe job manager listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep reading its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url)
}

impl Cluster {
    /// A job manager and task managers with the given slots.
    pub fn start(dir: &Path, slots: &[usize]) -> Cluster {
        Self::start_with(dir, slots, None)
    }

    /// The same over HTTPS, with a self-signed certificate every client is told to trust.
    pub fn start_tls(dir: &Path, slots: &[usize]) -> Cluster {
        let tls = TlsFiles::self_signed(dir).expect("a test certificate");
        Self::start_with(dir, slots, Some(tls))
    }

    fn start_with(dir: &Path, slots: &[usize], tls: Option<TlsFiles>) -> Cluster {
        let (jm, url) = start_job_manager_at(dir, "127.0.0.1:0", tls.as_ref());
        let mut c = Cluster {
            jm,
            url,
            token: TOKEN.into(),
            tms: Vec::new(),
            tls,
            dir: dir.to_path_buf(),
        };
        for s in slots {
            c.add_task_manager(*s);
        }
        let client = c.client();
        wait_for("the task managers to register", Duration::from_secs(30), || {
            client.taskmanagers().ok().filter(|t| t.len() == slots.len())
        });
        c
    }

    /// Kills the job manager (SIGKILL) and starts it again on the same address and data.
    pub fn restart_job_manager(&mut self) {
        let bind = self.url.split("://").nth(1).unwrap_or(&self.url).to_string();
        let _ = self.jm.0.kill();
        let _ = self.jm.0.wait();
        let (jm, url) = start_job_manager_at(&self.dir, &bind, self.tls.as_ref());
        assert_eq!(url, self.url, "the job manager came back on its address");
        self.jm = jm;
    }

    /// Starts one more task manager.
    pub fn add_task_manager(&mut self, slots: usize) {
        self.start_task_manager(slots, Stdio::inherit());
    }

    /// Starts one more task manager whose stderr (its own lines and its workers', as the
    /// test's `FLOE_TEST_LOG` asks) goes to the file `log`.
    pub fn add_task_manager_logged(&mut self, slots: usize, log: &Path) {
        let file = std::fs::File::create(log).expect("create the task manager's log");
        self.start_task_manager(slots, Stdio::from(file));
    }

    fn start_task_manager(&mut self, slots: usize, stderr: Stdio) {
        let n = self.tms.len();
        let child = Command::new(floe_bin())
            .args(["taskmanager", "--job-manager", &self.url, "--token", &self.token])
            .args(self.ca_args())
            .args(["--slots", &slots.to_string()])
            .arg("--work-dir")
            .arg(self.dir.join(format!("tm{n}")))
            .env(
                "RUST_LOG",
                std::env::var("FLOE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start floe taskmanager");
        self.tms.push(Proc(child));
    }

    /// A client of the job manager.
    pub fn client(&self) -> Client {
        let ca = self.tls.as_ref().map(|t| t.cert.clone());
        Client::with_ca_cert(self.url.clone(), Some(self.token.clone()), ca).unwrap()
    }

    /// `--ca-cert <file>` when the cluster serves HTTPS: for the CLI and job binaries.
    pub fn ca_args(&self) -> Vec<std::ffi::OsString> {
        match &self.tls {
            Some(tls) => vec!["--ca-cert".into(), tls.cert.clone().into()],
            None => Vec::new(),
        }
    }

    /// Waits until the job's detail satisfies `ok`.
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

/// Polls `f` until it gives something, failing the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes one OK payment an hour past every generated one to each partition of `topic`:
/// the watermark of a job that follows the topic then passes every real payment, and the
/// rule's last matches fire (a bounded run gets this from the end of its input).
pub fn advance_event_time(broker: &floe_dsl::kafka::testing::TestBroker, topic: &str, partitions: i32) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = broker.config().client_config(&[]).create().unwrap();
    for p in 0..partitions {
        let payment = floe_jobs::payments::Payment {
            event_id: u64::MAX - p as u64,
            user_id: u32::MAX,
            status: floe_jobs::payments::Status::Ok,
            amount: 1.0,
            ts: 1_767_225_600_000 + 10 * 24 * 3_600_000,
        };
        let payload = serde_json::to_vec(&payment).unwrap();
        producer
            .send(BaseRecord::to(topic).partition(p).key("end").payload(&payload))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Waits until as many alerts are committed to `fraud-alerts` as the fraud rule raises on
/// `payments` (the job follows the topic, so there is no end to wait for), then fails,
/// naming each alert missing or doubled, unless each of the rule's alerts is committed
/// exactly once and nothing else.
pub fn assert_alerts_exact(broker: &floe_dsl::kafka::testing::TestBroker, payments: &[floe_jobs::payments::Payment]) {
    let expected: Vec<Vec<u64>> = floe_jobs::fraud::oracle(payments)
        .into_iter()
        .map(|a| a.event_ids)
        .collect();
    assert!(expected.len() > 30, "the data raises alerts: {}", expected.len());
    wait_for("every alert", Duration::from_secs(120), || {
        let read = broker.read_committed("fraud-alerts").unwrap();
        (read.records.len() >= expected.len()).then_some(())
    });
    crate::common::assert_exactly_once(broker, "fraud-alerts", expected, crate::common::alert_payments);
}
