//! Runs of job processes that are killed with SIGKILL (at a failpoint or at a random moment)
//! and restarted: what each run said about its restore and its checkpoints, the checkpoints
//! on disk, inputs the checks can name, campaign figures, and the ONE function every check
//! of a topic's committed output goes through ([`assert_exactly_once`]).
#![allow(dead_code)] // each test binary uses its own subset

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use floe_dsl::kafka::testing::{CommittedRecord, TestBroker};

use crate::common::{alert_payments, counted_input, load_producer};
pub use floe_testkit::crash::{checkpoint_ids, TestRng};

/// Fails, naming inputs missing or doubled, unless the committed records of `topic` (what a
/// `read_committed` consumer sees, decided from the raw log) explain each of `expected`
/// exactly once and nothing else. Every output check of the failpoint and campaign tests
/// goes through here, and from here through the one verifier every exactly-once test
/// shares (`crate::common::assert_exactly_once`). Returns how many outputs were read.
pub fn assert_exactly_once<I: Ord + Clone + std::fmt::Debug>(
    broker: &TestBroker,
    topic: &str,
    expected: impl IntoIterator<Item = I>,
    explain: impl FnMut(&CommittedRecord) -> Result<Vec<I>, String>,
) -> usize {
    crate::common::assert_exactly_once(broker, topic, expected, explain).len()
}

/// Waits until `topic` holds at least `n` committed records (a job that follows its input
/// has no end to wait for), failing the test after `timeout`.
pub fn wait_for_outputs(broker: &TestBroker, topic: &str, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = broker.read_committed(topic).map(|r| r.records.len()).unwrap_or(0);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {got} of {n} outputs after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The input a dead letter stands for: its payload, the malformed record as it was read
/// (each must name its source topic and an error).
pub fn dead_letter_payload(r: &CommittedRecord) -> Result<Vec<String>, String> {
    if r.header("floe.source.topic").is_none() || r.header("floe.error").is_none_or(|e| e.is_empty()) {
        return Err(format!("a dead letter without its origin or error: {:?}", r.headers));
    }
    Ok(vec![
        String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
    ])
}

/// Keys of the `kafka-counts` input.
pub const KEYS: u64 = 20;
/// One malformed record after every this many valid ones.
pub const BAD_EVERY: u64 = 100;

/// The `kafka-counts` job at parallelism 2 on `broker`'s topics `events`, `counts` and
/// `events-dlq`, checkpointing every 100 ms into `chk`; `bounded` stops at the input's end.
pub fn counts_job(broker: &TestBroker, chk: &Path, bounded: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafka-counts"));
    c.args(["--brokers", &broker.brokers(), "--parallelism", "2"])
        .args(["--checkpoint-interval-ms", "100", "--state-cache-entries", "16"])
        .arg("--checkpoint-dir")
        .arg(chk);
    if bounded {
        c.arg("--bounded");
    }
    c
}

/// The fraud job at parallelism 2 on `broker`'s topics `payments`, `fraud-alerts` and
/// `payments-dlq`, checkpointing every 100 ms into `chk`.
pub fn fraud_job(broker: &TestBroker, chk: &Path, bounded: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fraud"));
    c.args(["--brokers", &broker.brokers(), "--parallelism", "2"])
        .args(["--checkpoint-interval-ms", "100", "--state-cache-entries", "64"])
        .arg("--checkpoint-dir")
        .arg(chk);
    if bounded {
        c.arg("--bounded");
    }
    c
}

/// A broker with the topics of `kafka-counts` (`events` 4 partitions, `counts` 4,
/// `events-dlq` 1) and of the fraud job ([`crate::common::fraud_broker`]).
pub fn broker() -> TestBroker {
    let broker = crate::common::fraud_broker();
    for (topic, partitions) in [("events", 4), ("counts", 4), ("events-dlq", 1)] {
        broker.create_topic(topic, partitions).unwrap();
    }
    broker
}

/// The bounded last run of a crash test (`command`, logging to `dir/run-last.log`): it must
/// end well within `timeout`, having restored the newest complete checkpoint in `chk`.
pub fn run_last(command: Command, dir: &Path, chk: &Path, timeout: Duration) -> RunLog {
    let on_disk = newest_complete(chk);
    let last = Running::start(command, &dir.join("run-last.log"), "").wait(timeout, "the last run");
    assert!(
        last.status.success(),
        "the last run failed ({}):\n{}",
        last.status,
        last.tail()
    );
    assert_restored_newest(&last, on_disk, true);
    last
}

/// Writes `kafka-counts` input at about `rate` records a second: event `i` is
/// `{"key": "k<i % KEYS>", "seq": <i / KEYS>}` keyed by its key (each key's events in order
/// in one partition), and after every `BAD_EVERY` a malformed record, each different (cut
/// JSON, wrong types, not an object, an empty key that the job's own check rejects).
/// Returns the malformed payloads: the inputs the dead-letter topic must explain.
pub fn write_counts_input(brokers: String, events: u64, rate: u64) -> Vec<String> {
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer<crate::common::Deliveries> = floe_dsl::kafka::KafkaConfig::new(brokers)
        .client_config(&load_producer())
        .create_with_context(crate::common::Deliveries::default())
        .unwrap();
    let mut bad = Vec::new();
    let started = Instant::now();
    for i in 0..events {
        let key = format!("k{}", i % KEYS);
        let value = format!("{{\"key\":\"{key}\",\"seq\":{}}}", i / KEYS);
        crate::common::send(&producer, i as usize, &key, value.as_bytes());
        if i % BAD_EVERY == BAD_EVERY - 1 {
            let payload = match (i / BAD_EVERY) % 4 {
                0 => format!("{{\"key\":\"{key}-{i}\",\"seq\":"),
                1 => format!("{{\"key\":7,\"seq\":\"x{i}\"}}"),
                2 => format!("{i}"),
                _ => format!("{{\"key\":\"\",\"seq\":{i}}}"),
            };
            crate::common::send(&producer, i as usize, &key, payload.as_bytes());
            bad.push(payload);
        }
        if rate > 0 && i % 100 == 99 {
            let due = Duration::from_secs_f64((i + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Pacing the load: the rate is the point here, not a synchronization.
                producer.poll(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    bad
}

/// Checks the whole output of `kafka-counts` for `events` inputs with `bad` malformed ones:
/// every event counted once with its right count, every malformed record in the dead-letter
/// topic once. Returns the outputs read.
pub fn assert_counts_exact(broker: &TestBroker, events: u64, bad: &[String]) -> usize {
    let expected = (0..events).map(|i| (format!("k{}", i % KEYS), i / KEYS));
    let counted = assert_exactly_once(broker, "counts", expected, counted_input);
    let dead = assert_exactly_once(broker, "events-dlq", bad.iter().cloned(), dead_letter_payload);
    counted + dead
}

/// Checks the whole output of the fraud job for the first `payments` of `profile` (with a
/// malformed record after every `malformed_every`): the alerts exactly those of the rule
/// applied to the payments (a fault-free run), each once, and every malformed record in the
/// dead-letter topic once. Returns the outputs read.
pub fn assert_fraud_exact(
    broker: &TestBroker,
    profile: &floe_jobs::payments::PaymentProfile,
    payments: u64,
    malformed_every: u64,
) -> usize {
    let expected = expected_alerts(profile, payments);
    assert!(expected.len() > 10, "the data raises alerts: {}", expected.len());
    let alerts = assert_exactly_once(broker, "fraud-alerts", expected, alert_payments);
    let malformed = malformed_payments(profile, payments, malformed_every);
    let dead = assert_exactly_once(broker, "payments-dlq", malformed, dead_letter_payload);
    alerts + dead
}

/// The alerts the fraud rule raises on the first `payments` of `profile` (what a fault-free
/// run commits), each by its payments.
pub fn expected_alerts(profile: &floe_jobs::payments::PaymentProfile, payments: u64) -> Vec<Vec<u64>> {
    let all: Vec<floe_jobs::payments::Payment> = (0..payments).map(|i| profile.payment(i)).collect();
    floe_jobs::fraud::oracle(&all)
        .into_iter()
        .map(|a| a.event_ids)
        .collect()
}

/// The malformed records the load generator writes among the first `payments` of
/// `profile`, one after every `malformed_every` (see `floe_jobs::generator`).
pub fn malformed_payments(
    profile: &floe_jobs::payments::PaymentProfile,
    payments: u64,
    malformed_every: u64,
) -> Vec<String> {
    (0..payments)
        .filter(|i| malformed_every > 0 && i % malformed_every == malformed_every - 1)
        .map(|i| {
            format!(
                "{{\"user_id\":\"{}\",\"status\":\"MAYBE\"}}",
                profile.payment(i).user_id
            )
        })
        .collect()
}

/// Fails unless a run restored the newest complete checkpoint that was on disk when it
/// started (`on_disk`), or started afresh when there was none. A run killed before it
/// said (`said_required` false) is let off if it said nothing.
pub fn assert_restored_newest(log: &RunLog, on_disk: Option<u64>, said_required: bool) {
    match (on_disk, log.restored()) {
        (Some(want), Some(got)) => assert_eq!(
            got,
            want,
            "restored checkpoint {got}, but the newest complete one on disk was {want}:\n{}",
            log.tail()
        ),
        (Some(want), None) => assert!(
            !said_required && !log.fresh_start(),
            "checkpoint {want} was complete on disk, and the run did not restore it:\n{}",
            log.tail()
        ),
        (None, Some(got)) => panic!("restored checkpoint {got}, but none was complete on disk"),
        (None, None) => assert!(
            !said_required || log.fresh_start(),
            "the run said nothing about its restore:\n{}",
            log.tail()
        ),
    }
}

/// `RUST_LOG` for job runs whose restores and completed checkpoints the test reads.
pub const RUN_LOG: &str = "warn,floe_runtime::executor=info,floe_runtime::coordinator=info";

/// What a run of a job wrote to stderr, read back after it ended.
#[derive(Debug)]
pub struct RunLog {
    pub status: ExitStatus,
    pub stderr: String,
}

fn without_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `field=` in `line`.
fn field(line: &str, field: &str) -> Option<u64> {
    let at = line.find(&format!("{field}="))? + field.len() + 1;
    let digits: String = line[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl RunLog {
    /// The checkpoint the run restored, if it said (`None` also when it started afresh).
    pub fn restored(&self) -> Option<u64> {
        self.stderr
            .lines()
            .find(|l| l.contains("restoring from checkpoint"))
            .and_then(|l| field(l, "checkpoint"))
    }

    /// Whether the run said it starts from scratch.
    pub fn fresh_start(&self) -> bool {
        self.stderr
            .contains("no checkpoint to restore: the job starts from scratch")
    }

    /// The checkpoints the run completed, in order.
    pub fn completed(&self) -> Vec<u64> {
        self.stderr
            .lines()
            .filter(|l| l.contains("checkpoint complete"))
            .filter_map(|l| field(l, "checkpoint"))
            .collect()
    }

    /// Whether the process ended by SIGKILL.
    pub fn sigkilled(&self) -> bool {
        self.status.signal() == Some(9)
    }

    /// The last lines of stderr, for messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A job process whose stderr goes to a file (so it never blocks on a pipe).
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
    pub started: Instant,
}

impl Running {
    /// Starts `command` with its stderr in `log`, stdout discarded, logging restores and
    /// checkpoints, and with `failpoints` as `FLOE_FAILPOINTS` (none if empty).
    pub fn start(mut command: Command, log: &Path, failpoints: &str) -> Running {
        let file = File::create(log).unwrap();
        command
            .env("RUST_LOG", RUN_LOG)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file);
        if failpoints.is_empty() {
            command.env_remove(floe_failpoints::ENV);
        } else {
            command.env(floe_failpoints::ENV, failpoints);
        }
        Running {
            child: command.spawn().unwrap(),
            log: log.to_path_buf(),
            started: Instant::now(),
        }
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        without_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Waits until it ends, failing the test after `timeout` (killing it first).
    pub fn wait(mut self, timeout: Duration, what: &str) -> RunLog {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return RunLog {
                    status,
                    stderr: self.stderr(),
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{what}: still running after {timeout:?}; its log ends:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `ok` holds for what it logged so far, failing the test after `timeout`
    /// or if it ends first.
    pub fn wait_for_log(&mut self, timeout: Duration, what: &str, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ok(&self.stderr()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the job ended ({status}) before {what}; its log ends:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills it with SIGKILL and waits for it.
    pub fn kill(mut self) -> RunLog {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        RunLog {
            status,
            stderr: self.stderr(),
        }
    }
}

/// Waits for a run started with a `kill` failpoint to die of it: SIGKILL, and the line the
/// failpoint writes just before, naming `target` (`name` or `name[qualifier]`).
pub fn expect_killed_at(run: Running, target: &str, timeout: Duration) -> RunLog {
    let log = run.wait(timeout, &format!("failpoint {target} (never hit?)"));
    assert!(
        log.sigkilled(),
        "the run was to die of SIGKILL at failpoint {target}, it ended with {}:\n{}",
        log.status,
        log.tail()
    );
    assert!(
        log.stderr.contains(&format!("floe failpoint {target}: kill@")),
        "killed, but not at failpoint {target}:\n{}",
        log.tail()
    );
    log
}

/// The newest complete checkpoint in `chk`: the one a restart must restore.
pub fn newest_complete(chk: &Path) -> Option<u64> {
    checkpoint_ids(chk).last().copied()
}

/// The seeded moments of a campaign, from `FLOE_CAMPAIGN_SEED` or the clock (the seed is
/// printed, so that a failing campaign can be replayed).
pub fn campaign_rng(what: &str) -> TestRng {
    TestRng::from_env("FLOE_CAMPAIGN_SEED", what)
}

/// A number from environment variable `name`, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What a campaign saw, printed at its end.
#[derive(Debug, Default)]
pub struct Figures {
    pub kills: usize,
    /// Checkpoints completed by each killed run.
    pub checkpoints: Vec<usize>,
    /// Restores checked against the newest complete checkpoint on disk.
    pub restores: usize,
    /// From each kill to the first checkpoint the next run completed.
    pub recovery: Vec<Duration>,
}

impl Figures {
    /// The `p`-th percentile (0..=100) of the recovery times.
    pub fn recovery_percentile(&self, p: usize) -> Duration {
        let mut v = self.recovery.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        // Nearest rank.
        v[(v.len() * p).div_ceil(100).max(1) - 1]
    }

    /// One line for the test's output.
    pub fn summary(&self, what: &str, outputs: usize, inputs: usize) -> String {
        format!(
            "{what}: {} kills, {} checkpoints completed between them (per run {:?}), {} restores checked, recovery \
             p50 {:?} p99 {:?} max {:?}; {outputs} outputs for {inputs} inputs, 0 lost, 0 duplicated",
            self.kills,
            self.checkpoints.iter().sum::<usize>(),
            self.checkpoints,
            self.restores,
            self.recovery_percentile(50),
            self.recovery_percentile(99),
            self.recovery.iter().max().copied().unwrap_or_default(),
        )
    }
}
