//! Real Kafka-protocol brokers for integration tests and demos: [`TestBroker`] starts a tansu
//! broker process on a free 127.0.0.1 port (installed by `scripts/tansu.sh` if missing) and
//! kills it when dropped; [`mock_cluster`] starts librdkafka's in-process mock cluster, for
//! fault injection.

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

/// The repository's `scripts/tansu.sh`, which prints the broker's path (installing it).
fn tansu_path() -> io::Result<PathBuf> {
    if let Ok(p) = std::env::var("FLOE_TANSU") {
        return Ok(PathBuf::from(p));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/tansu.sh");
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
}

impl TestBroker {
    /// Starts a broker with in-memory storage on a free loopback port and waits until it
    /// accepts connections.
    pub fn start() -> io::Result<TestBroker> {
        let tansu = tansu_path()?;
        let mut last = None;
        // A port found free can be taken before the broker binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&tansu)
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| io::Error::other(format!("starting {}: {e}", tansu.display())))?;
            let mut broker = TestBroker { child, port };
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

    /// The bootstrap servers (`127.0.0.1:PORT`).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client configuration for this broker.
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(self.brokers())
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> io::Result<()> {
        create_topic(&self.config(), topic, partitions)
    }

    /// Kills the broker now (as SIGKILL).
    pub fn kill(&mut self) {
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
