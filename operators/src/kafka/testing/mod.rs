//! Real Kafka-protocol brokers for integration tests and demos, and the exactly-once
//! verifier: [`TestBroker`] starts a tansu broker process on a free 127.0.0.1 port
//! (installed by `scripts/tansu.sh` if missing) and kills it when dropped; [`mock_cluster`]
//! starts librdkafka's in-process mock cluster, for fault injection.
//!
//! The verifier reads a topic as a `read_committed` consumer would see it, from the raw
//! record batches of the log ([`read_committed`] from [`crate::kafka::log`],
//! [`TestBroker::read_committed`]: records of a transaction count once its COMMIT marker
//! follows them), and checks that every expected
//! input is explained by exactly one committed output and every output by an expected input
//! ([`check_exactly_once`], [`Ledger`]), naming each input missing or doubled.

mod ledger;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::KafkaConfig;

pub use super::log::{
    decode_batches, read_committed, read_committed_to_end, resolve_partition, Batch, BatchError, BatchRecord,
    CommittedRead, CommittedRecord, Compression, ControlType, Decoded, Position, Unresolved, END_MARKER_HEADER,
    MAX_BATCH_BYTES,
};
pub use ledger::{check_exactly_once, describe, Ledger, LedgerViolations, Miscount, Unreadable};

/// The repository's `scripts/<name>`: found from the crate whose tests run (cargo sets
/// `CARGO_MANIFEST_DIR` for them), else from where this crate was compiled. (A build cache
/// shared between checkouts can hold this crate compiled in another checkout.)
fn script(name: &str) -> PathBuf {
    let running = std::env::var_os("CARGO_MANIFEST_DIR").map(|d| PathBuf::from(d).join("../scripts").join(name));
    running
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name))
}

/// The repository's `scripts/tansu.sh`, which prints the broker's path (installing it).
fn tansu_path() -> io::Result<PathBuf> {
    if let Ok(p) = std::env::var("FLOE_TANSU") {
        return Ok(PathBuf::from(p));
    }
    let script = script("tansu.sh");
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} failed: the test broker is not installed",
            script.display()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A tansu broker process listening on 127.0.0.1, killed on drop.
///
/// ```no_run
/// use floe_operators::kafka::testing::TestBroker;
/// let broker = TestBroker::start().unwrap();
/// broker.create_topic("payments", 4).unwrap();
/// println!("bootstrap servers: {}", broker.brokers());
/// ```
pub struct TestBroker {
    child: Child,
    port: u16,
    tls: Option<TlsProxy>,
}

/// The TLS front of a [`TestBroker::start_tls`] broker.
struct TlsProxy {
    child: Child,
    port: u16,
    /// Holds the certificate and key; removed on drop.
    dir: PathBuf,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestBroker {
    /// Starts a broker with in-memory storage on a free loopback port and waits until it
    /// accepts connections.
    pub fn start() -> io::Result<TestBroker> {
        Self::start_advertising(None)
    }

    /// Starts a broker that clients reach over TLS only: tansu itself speaks plaintext, so
    /// a TLS-terminating proxy (`scripts/tls-proxy.py`, Python's `ssl` module) listens on
    /// another loopback port with a fresh self-signed certificate for 127.0.0.1 (made with
    /// the `openssl` command), and the broker advertises the proxy's port. [`config`]
    /// (Self::config) sets `security.protocol=SSL` and the certificate as the trusted CA.
    pub fn start_tls() -> io::Result<TestBroker> {
        let tls_port = free_port()?;
        let mut broker = Self::start_advertising(Some(tls_port))?;
        let dir = std::env::temp_dir().join(format!("floe-tls-{}-{tls_port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| io::Error::other(format!("running openssl (install it: apt-get install openssl): {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "openssl could not make a test certificate: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let script = script("tls-proxy.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&cert)
            .arg(&key)
            .arg(tls_port.to_string())
            .arg(broker.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::other(format!("starting {} with python3: {e}", script.display())))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            io::BufRead::read_line(&mut io::BufReader::new(out), &mut line)?;
        }
        broker.tls = Some(TlsProxy {
            child,
            port: tls_port,
            dir,
        });
        if line.trim() != "ready" {
            return Err(io::Error::other("the TLS proxy of the test broker did not start"));
        }
        Ok(broker)
    }

    /// Starts tansu on a free port, advertising `advertised` (another port) if given.
    fn start_advertising(advertised: Option<u16>) -> io::Result<TestBroker> {
        let tansu = tansu_path()?;
        let mut last = None;
        // A port found free can be taken before the broker binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
            let child = Command::new(&tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &advertised,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| io::Error::other(format!("starting {}: {e}", tansu.display())))?;
            let mut broker = TestBroker { child, port, tls: None };
            match broker.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(broker),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("the test broker did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("the test broker exited: {status}")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the test broker did not open its port in time"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The bootstrap servers (`127.0.0.1:PORT`; the TLS port for a TLS broker).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.tls.as_ref().map_or(self.port, |t| t.port))
    }

    /// A client configuration for this broker (with TLS settings for a TLS broker).
    pub fn config(&self) -> KafkaConfig {
        let config = KafkaConfig::new(self.brokers());
        match &self.tls {
            None => config,
            Some(t) => config
                .set("security.protocol", "SSL")
                .set("ssl.ca.location", t.dir.join("cert.pem").to_string_lossy()),
        }
    }

    /// The certificate a TLS broker presents (to trust it as a CA), if it is one.
    pub fn tls_certificate(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|t| t.dir.join("cert.pem"))
    }

    /// `topic` as a `read_committed` consumer would see it, decided from the raw log (see
    /// [`read_committed`]): everything committed before the call, from offset 0 of every
    /// partition. Fetches from the broker's plaintext port (a TLS broker's too).
    pub fn read_committed(&self, topic: &str) -> io::Result<CommittedRead> {
        let raw = SocketAddr::from(([127, 0, 0, 1], self.port));
        read_committed(&self.config(), raw, topic, Duration::from_secs(120))
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> io::Result<()> {
        create_topic(&self.config(), topic, partitions)
    }

    /// Kills the broker now (as SIGKILL).
    pub fn kill(&mut self) {
        self.tls = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates `topic` with `partitions` partitions through the admin API, or adds partitions
/// to it so that it has `partitions` (existing topics are not an error).
pub fn create_topic(config: &KafkaConfig, topic: &str, partitions: i32) -> io::Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .client_config(&[])
        .create()
        .map_err(|e| io::Error::other(format!("admin client: {e}")))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&new], &opts))
        .map_err(|e| io::Error::other(format!("creating topic {topic}: {e}")))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(io::Error::other(format!("creating topic {t}: {code}"))),
        }
    }
    Ok(())
}

/// Runs a future to completion on this thread (the admin API is asynchronous; Floe's tasks
/// are threads).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// librdkafka's in-process mock cluster with `brokers` brokers on 127.0.0.1 (for fault
/// injection: brokers down and up, request errors, delays).
pub fn mock_cluster(brokers: i32) -> io::Result<MockCluster<'static, DefaultProducerContext>> {
    MockCluster::new(brokers).map_err(|e| io::Error::other(format!("mock cluster: {e}")))
}
