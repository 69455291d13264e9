//! `floe tail` end to end: the built `floe` binary against a real Kafka-protocol broker
//! (tansu on a loopback port, see `floe_operators::kafka::testing`), records produced with a
//! plain rdkafka producer, assertions on what the process prints and how it exits.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use floe_operators::kafka::testing::TestBroker;
use floe_testkit::{wait_until, DEADLINE};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};

const FLOE: &str = env!("CARGO_BIN_EXE_floe");

/// A record to produce.
#[derive(Clone, Default)]
struct Rec {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<&'static str>)>,
}

fn rec(partition: i32, key: &str, value: &str) -> Rec {
    Rec {
        partition,
        key: Some(key.into()),
        value: Some(value.into()),
        headers: vec![],
    }
}

fn start(topic: &str, partitions: i32) -> TestBroker {
    let broker = TestBroker::start().expect("start the test broker");
    broker.create_topic(topic, partitions).expect("create the topic");
    broker
}

/// Produces `records`, each in a batch of its own: tansu (0.6.0) answers ListOffsets(latest)
/// with the base offset of the partition's last batch plus one, so a "from the end" start
/// or a negative `--offset` after a batch of several records would land inside that batch.
fn produce(broker: &TestBroker, topic: &str, records: &[Rec]) {
    let producer: BaseProducer = broker.config().client_config(&[("linger.ms", "0")]).create().unwrap();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &r.headers {
            headers = headers.insert(Header { key, value: *value });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(r.partition)
            .headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.flush(Duration::from_secs(10)).expect("flush");
    }
}

/// `floe tail <args> --brokers <broker>`.
fn floe(broker: &TestBroker, args: &[&str]) -> Command {
    let mut cmd = Command::new(FLOE);
    cmd.arg("tail").args(args).args(["--brokers", &broker.brokers()]);
    cmd.env_remove("FLOE_BROKERS");
    cmd
}

/// A running `floe` with its stdout and stderr read line by line on threads.
struct Running {
    child: Child,
    stdout: Option<Receiver<String>>,
    stderr: Receiver<String>,
    stderr_seen: Vec<String>,
}

fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run floe");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Running {
            child,
            stdout: Some(stdout),
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// Spawns with stdout left to the caller (to close it like `head` does).
    fn spawn_raw_stdout(mut cmd: Command) -> (Running, ChildStdout) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run floe");
        let stdout = child.stdout.take().unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        (
            Running {
                child,
                stdout: None,
                stderr,
                stderr_seen: Vec::new(),
            },
            stdout,
        )
    }

    /// Waits for a stderr line containing `needle` (e.g. the "following" note that says the
    /// partitions are assigned and their start offsets fixed).
    fn wait_stderr(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?}; stderr so far: {:?}", self.stderr_seen),
            }
        }
    }

    fn next_line(&self) -> String {
        self.stdout
            .as_ref()
            .unwrap()
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no output line in time; stderr: {:?}", self.stderr_seen))
    }

    /// Waits for the process to end (killing it after the deadline) and returns its status
    /// and the rest of its stdout and stderr.
    fn finish(mut self, deadline: Duration) -> (ExitStatus, Vec<String>, String) {
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let rest: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "floe did not exit within {deadline:?}; stderr: {:?} {rest:?}",
                    self.stderr_seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end at end of file, now that the process is gone.
        let out = self.stdout.take().map(|rx| rx.iter().collect()).unwrap_or_default();
        let mut err = std::mem::take(&mut self.stderr_seen);
        err.extend(self.stderr.iter());
        (status, out, err.join("\n"))
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Whether the process has exited (it is reaped by [`finish`](Self::finish)).
    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `floe` to its end; asserts exit code 0 and returns stdout lines and stderr.
fn run_ok(cmd: Command) -> (Vec<String>, String) {
    let (status, out, err) = Running::spawn(cmd).finish(DEADLINE);
    assert!(status.success(), "floe failed ({status}); stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    (out, err)
}

/// Runs `floe` to its end; returns the exit code and stderr.
fn run_fail(cmd: Command) -> (i32, String) {
    let (status, _, err) = Running::spawn(cmd).finish(DEADLINE);
    assert!(!err.contains("panicked"), "{err}");
    (status.code().expect("an exit code, not a signal"), err)
}

fn parse_json_lines(lines: &[String]) -> Vec<Value> {
    let mut records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    records.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
    records
}

fn offsets(records: &[Value]) -> Vec<(i64, i64)> {
    records
        .iter()
        .map(|r| (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap()))
        .collect()
}

#[test]
fn json_from_the_beginning_has_every_field() {
    let broker = start("payments", 3);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    produce(
        &broker,
        "payments",
        &[
            Rec {
                headers: vec![("trace", Some("t0"))],
                ..rec(0, "k0", r#"{"user": 7, "amount": 2.50}"#)
            },
            Rec {
                headers: vec![("trace", Some("t1")), ("empty", None)],
                ..rec(1, "k1", "plain text")
            },
            Rec {
                partition: 2,
                key: None,
                value: Some(vec![0xff, 0x00, 0x01]),
                headers: vec![],
            },
            rec(0, "k3", "[1,2]"),
            Rec {
                value: None,
                ..rec(1, "deleted", "")
            },
        ],
    );
    // The brokers from the environment this time.
    let mut cmd = Command::new(FLOE);
    cmd.args(["tail", "payments", "--from-beginning", "--max", "5", "--format", "json"]);
    cmd.env("FLOE_BROKERS", broker.brokers());
    let (out, err) = run_ok(cmd);
    assert!(
        err.contains("following payments (3 partitions) from the beginning"),
        "{err}"
    );
    assert_eq!(out.len(), 5, "{out:?}");
    let records = parse_json_lines(&out);
    assert_eq!(offsets(&records), vec![(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]);
    for r in &records {
        assert_eq!(r["topic"], "payments");
        let ts = r["timestamp"].as_i64().expect("a timestamp");
        assert!(ts >= before - 60_000 && ts < before + 60_000, "{r}");
    }
    // A JSON value is embedded as JSON, in its own key order.
    assert_eq!(records[0]["value"], json!({"user": 7, "amount": 2.5}));
    assert!(
        out.iter().any(|l| l.contains(r#""value":{"user":7,"amount":2.50}"#)),
        "{out:?}"
    );
    assert_eq!(records[0]["key"], "k0");
    assert_eq!(records[0]["headers"], json!([{"key": "trace", "value": "t0"}]));
    assert_eq!(records[1]["value"], json!([1, 2]));
    assert_eq!(records[1]["headers"], json!([]));
    // Text that is not JSON is a string; a header without a value is null.
    assert_eq!(records[2]["value"], "plain text");
    assert_eq!(
        records[2]["headers"],
        json!([{"key": "trace", "value": "t1"}, {"key": "empty", "value": null}])
    );
    // A tombstone.
    assert_eq!(
        (records[3]["key"].clone(), records[3]["value"].clone()),
        (json!("deleted"), Value::Null)
    );
    // Bytes that are not UTF-8 are base64, and the record says so.
    assert_eq!(records[4]["key"], Value::Null);
    assert_eq!(records[4]["value"], "/wAB");
    assert_eq!(records[4]["value_encoding"], "base64");
    assert!(records[0].get("value_encoding").is_none());
}

#[test]
fn pretty_shows_partition_offset_time_key_value_and_headers() {
    let broker = start("alerts", 2);
    produce(
        &broker,
        "alerts",
        &[Rec {
            headers: vec![("trace-id", Some("abc-123")), ("source", Some("fraud"))],
            ..rec(1, "user-7", "five failed payments\nin 60 s")
        }],
    );
    let (out, _) = run_ok(floe(
        &broker,
        &["alerts", "--from-beginning", "--max", "1", "--headers"],
    ));
    let text = out.join("\n");
    assert!(out[0].starts_with("partition 1, offset 0, 20"), "{text}");
    // ISO-8601 UTC and milliseconds since the epoch.
    assert!(
        out[0].contains('T') && out[0].contains("Z (") && out[0].ends_with(')'),
        "{text}"
    );
    assert!(text.contains("  key: user-7"), "{text}");
    // A newline in the value is escaped, so that a record keeps its layout.
    assert!(text.contains(r"  value: five failed payments\nin 60 s"), "{text}");
    assert!(text.contains("  header trace-id: abc-123"), "{text}");
    assert!(text.contains("  header source: fraud"), "{text}");

    // Without --headers, no headers.
    let (out, _) = run_ok(floe(&broker, &["alerts", "--from-beginning", "--max", "1"]));
    assert!(!out.join("\n").contains("header"), "{out:?}");
}

#[test]
fn raw_prints_the_value_bytes() {
    let broker = start("raw", 1);
    produce(&broker, "raw", &[rec(0, "a", "first"), rec(0, "b", "{\"x\": 1}")]);
    let (out, _) = run_ok(floe(
        &broker,
        &["raw", "--from-beginning", "--max", "2", "--format", "raw"],
    ));
    assert_eq!(out, vec!["first".to_string(), "{\"x\": 1}".into()]);
}

#[test]
fn by_default_only_records_produced_after_start_are_shown() {
    let broker = start("live", 2);
    produce(&broker, "live", &[rec(0, "old", "old-0"), rec(1, "old", "old-1")]);
    let mut tail = Running::spawn(floe(&broker, &["live", "--format", "json", "--max", "3"]));
    tail.wait_stderr("following live (2 partitions) from the end");
    produce(
        &broker,
        "live",
        &[rec(0, "new", "new-0"), rec(1, "new", "new-1"), rec(1, "new", "new-2")],
    );
    let (status, out, err) = tail.finish(DEADLINE);
    assert!(status.success(), "{err}");
    let records = parse_json_lines(&out);
    let values: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, vec!["new-0", "new-1", "new-2"]);
    assert_eq!(offsets(&records), vec![(0, 1), (1, 1), (1, 2)]);
}

#[test]
fn partition_and_offset_choose_where_to_start() {
    let broker = start("events", 2);
    let mut records: Vec<Rec> = (0..5).map(|i| rec(1, "k", &format!("p1-{i}"))).collect();
    records.extend((0..3).map(|i| rec(0, "k", &format!("p0-{i}"))));
    produce(&broker, "events", &records);

    let json = ["--format", "json"];
    let (out, err) = run_ok(floe(
        &broker,
        &[
            &["events", "--partition", "1", "--offset", "2", "--max", "3"][..],
            &json,
        ]
        .concat(),
    ));
    assert!(err.contains("following events (partition 1) from offset 2"), "{err}");
    assert_eq!(offsets(&parse_json_lines(&out)), vec![(1, 2), (1, 3), (1, 4)]);

    // Negative: that many records before the end.
    let (out, _) = run_ok(floe(
        &broker,
        &[&["events", "-p", "1", "--offset", "-2", "--max", "2"][..], &json].concat(),
    ));
    assert_eq!(offsets(&parse_json_lines(&out)), vec![(1, 3), (1, 4)]);

    // Several partitions, as a list or repeated; only those.
    let (out, _) = run_ok(floe(
        &broker,
        &[&["events", "-p", "0,1", "--offset", "1", "--max", "6"][..], &json].concat(),
    ));
    assert_eq!(
        offsets(&parse_json_lines(&out)),
        vec![(0, 1), (0, 2), (1, 1), (1, 2), (1, 3), (1, 4)]
    );
    let (out, _) = run_ok(floe(
        &broker,
        &[
            &["events", "--partition", "0", "--from-beginning", "--max", "3"][..],
            &json,
        ]
        .concat(),
    ));
    assert_eq!(offsets(&parse_json_lines(&out)), vec![(0, 0), (0, 1), (0, 2)]);

    // More records before the end than there are: from the oldest one.
    let (out, err) = run_ok(floe(
        &broker,
        &[&["events", "-p", "0", "--offset", "-100", "--max", "3"][..], &json].concat(),
    ));
    assert_eq!(offsets(&parse_json_lines(&out)), vec![(0, 0), (0, 1), (0, 2)]);
    assert!(err.contains("100 records before the end"), "{err}");

    // A partition the topic does not have is a runtime error that says what to change.
    let (code, err) = run_fail(floe(&broker, &["events", "--partition", "7"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no partition 7") && err.contains("--partition"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn isolation_levels_are_accepted_and_a_bad_one_is_a_usage_error() {
    // The brokers that run here do not hide aborted transactions from read_committed
    // consumers (see KAFKA-BROKERS.md), so this cannot show that aborted records stay
    // hidden: it shows that the level reaches the client and that committed and plain
    // records are read under both.
    let broker = start("txn", 1);
    produce(&broker, "txn", &[rec(0, "plain", "p")]);
    let producer: BaseProducer = broker
        .config()
        .client_config(&[("transactional.id", "tail-test")])
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(10)).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to("txn").partition(0).key("t").payload("committed"))
        .unwrap();
    producer.commit_transaction(Duration::from_secs(10)).unwrap();

    for level in ["read-committed", "read-uncommitted"] {
        let cmd = floe(
            &broker,
            &[
                "txn",
                "--from-beginning",
                "--max",
                "2",
                "--format",
                "raw",
                "--isolation",
                level,
            ],
        );
        let (out, _) = run_ok(cmd);
        assert_eq!(out, vec!["p".to_string(), "committed".into()], "{level}");
    }
    let (code, err) = run_fail(floe(&broker, &["txn", "--isolation", "read_dirty"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--isolation"), "{err}");
}

#[test]
fn a_group_resumes_where_it_committed_and_no_group_commits_nothing() {
    let broker = start("grouped", 1);
    produce(
        &broker,
        "grouped",
        &(0..6).map(|i| rec(0, "k", &format!("v{i}"))).collect::<Vec<_>>(),
    );
    let raw = |args: &[&str]| run_ok(floe(&broker, &[&["grouped", "--format", "raw"][..], args].concat()));

    let (out, _) = raw(&["--group", "g", "--from-beginning", "--max", "2"]);
    assert_eq!(out, vec!["v0", "v1"]);
    let (out, err) = raw(&["--group", "g", "--max", "2"]);
    assert_eq!(out, vec!["v2", "v3"], "{err}");
    assert!(err.contains("committed offsets of group `g`"), "{err}");
    // Without a group, nothing is committed anywhere: from the beginning is the beginning.
    let (out, _) = raw(&["--from-beginning", "--max", "1"]);
    assert_eq!(out, vec!["v0"]);
    let (out, _) = raw(&["--group", "g", "--max", "1"]);
    assert_eq!(out, vec!["v4"]);
}

#[test]
fn broken_pipe_ends_quietly_with_success() {
    let broker = start("piped", 1);
    produce(&broker, "piped", &[rec(0, "k", "first"), rec(0, "k", "second")]);
    // Like `floe tail piped --from-beginning | head -1`.
    let (mut tail, stdout) =
        Running::spawn_raw_stdout(floe(&broker, &["piped", "--from-beginning", "--format", "raw"]));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        drop(reader); // closes the pipe, as `head` does when it has its line
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(DEADLINE).expect("a first line");
    assert_eq!(line, "first\n");
    tail.wait_stderr("following piped");
    // The next records cannot be written anywhere: floe notices at its next write and
    // ends. (What it wrote before the pipe closed may have fit in the pipe's buffer, so it
    // is given records until it has noticed.)
    let mut round = 0;
    wait_until("floe to notice the closed pipe and exit", DEADLINE, || {
        if tail.exited() {
            return true;
        }
        produce(&broker, "piped", &[rec(0, "k", &format!("more-{round}"))]);
        round += 1;
        false
    });
    let (status, _, err) = tail.finish(DEADLINE);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

#[test]
fn sigint_and_sigterm_end_quietly_with_success() {
    let broker = start("signals", 1);
    for signal in ["-INT", "-TERM"] {
        let mut tail = Running::spawn(floe(&broker, &["signals", "--format", "raw"]));
        tail.wait_stderr("following signals (1 partition) from the end");
        produce(&broker, "signals", &[rec(0, "k", signal)]);
        assert_eq!(tail.next_line(), signal);
        let killed = Command::new("kill").args([signal, &tail.pid()]).status().unwrap();
        assert!(killed.success());
        let (status, _, err) = tail.finish(DEADLINE);
        assert_eq!(status.code(), Some(0), "{signal}: {err}");
        assert!(!err.contains("panicked") && !err.contains("error"), "{signal}: {err}");
    }
}

#[test]
fn a_topic_that_does_not_exist_is_waited_for_or_given_up_on() {
    let broker = TestBroker::start().expect("start the test broker");
    // Long enough for a loaded machine's broker to answer at all: `--timeout` also bounds
    // the wait for a first answer, and a broker that never answered is another error.
    let (code, err) = run_fail(floe(&broker, &["nowhere", "--timeout", "5s"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("floe tail: topic `nowhere` does not exist"), "{err}");

    // Without --timeout it waits, then shows the topic from its beginning: all of it is new.
    let mut tail = Running::spawn(floe(&broker, &["later", "--format", "raw", "--max", "1"]));
    tail.wait_stderr("topic `later` does not exist yet");
    broker.create_topic("later", 1).unwrap();
    produce(&broker, "later", &[rec(0, "k", "hello")]);
    let (status, out, err) = tail.finish(DEADLINE);
    assert!(status.success(), "{err}");
    assert_eq!(out, vec!["hello"]);
    assert!(
        err.contains("following later (1 partition) from the beginning"),
        "{err}"
    );
}

#[test]
fn wrong_arguments_say_which_flag() {
    let broker = TestBroker::start().expect("start the test broker");
    for (args, code, flag) in [
        (&["t", "--format", "xml"][..], 2, "--format"),
        (&["t", "--offset", "3"], 2, "--partition"),
        (&["t", "-p", "0", "--offset", "x"], 2, "--offset"),
        (&["t", "-X", "no-equals-sign"], 2, "--property"),
        (&["t", "--max", "0"], 2, "--max"),
        (&["t", "--timeout", "soon"], 2, "--timeout"),
        (
            &["t", "-X", "no.such.property=1", "--timeout", "1s"],
            1,
            "no.such.property",
        ),
    ] {
        let (got, err) = run_fail(floe(&broker, args));
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
    }
    // Secrets stay out of error messages.
    let (code, err) = run_fail(floe(
        &broker,
        &[
            "t",
            "-X",
            "sasl.password=hunter2",
            "-X",
            "security.protocol=carrier-pigeon",
        ],
    ));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("security.protocol") && !err.contains("hunter2"), "{err}");
    // Brokers that do not answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(FLOE);
    cmd.args(["tail", "t", "--timeout", "1s", "--brokers", &closed.to_string()]);
    let (code, err) = run_fail(cmd);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("floe tail: no answer from the brokers") && err.contains("--brokers"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn help_everywhere_and_usage_errors_exit_2() {
    let out = Command::new(FLOE).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("tail"));
    let out = Command::new(FLOE).args(["tail", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--from-beginning",
        "--partition",
        "--offset",
        "--max",
        "--group",
        "--isolation",
        "--format",
        "--headers",
        "--brokers",
        "--property",
        "FLOE_BROKERS",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for args in [&[][..], &["tial"], &["tail"]] {
        let out = Command::new(FLOE).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
