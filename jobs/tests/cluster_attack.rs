//! The fraud job at parallelism 2 on two task managers (real processes), attacked by a
//! stranger on the same host: `scripts/attack-cluster.py`, written apart from the project
//! (raw sockets, no secret), finds the workers' ports from /proc and tries every attack of
//! issue 15 on them: no secret, a wrong secret, forged control messages (worker 1's
//! hello, then `SourceEnded` of task 1000), forged records, a 4 GiB length prefix, one
//! byte a second, and 200 idle connections.
//!
//! While the attempt starts, worker 1 is held (SIGSTOP) the moment it exists, so the
//! attacker's connections sit in worker 0's accept queue ahead of the real peer's: the race
//! the attacker won, made certain. Each attack is refused within the handshake
//! deadline, the workers count each refusal under its reason, their memory stays flat,
//! nothing panics, and the job runs on unhurt. Once it runs, the workers listen on no port
//! at all: the same attacks are refused by the operating system. The committed alerts are
//! exactly those of the rule applied to the payments.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use floe_cluster::protocol::JobState;
use floe_jobs::payments::{Payment, PaymentProfile};
use floe_testkit::cluster::{Cluster, TOKEN};
use serde_json::Value;

const PAYMENTS: u64 = 24_000;
/// The workers' handshake deadline, and the slack a loaded machine may add to it.
const DEADLINE: f64 = 5.0;
const SLACK: f64 = 2.0;
/// How much a worker's memory may grow while it is attacked.
const RSS_BOUND_KB: u64 = 64 * 1024;
/// The worker-side reason each attack that reached a worker must be counted under.
const REASONS: [(&str, &str); 7] = [
    ("no-secret", "malformed"),
    ("wrong-secret", "bad_mac"),
    ("forged-control", "bad_mac"),
    ("forged-data", "bad_mac"),
    ("huge", "oversized"),
    ("slow", "timeout"),
    ("idle", "timeout"),
];

fn profile() -> PaymentProfile {
    common::attack_profile(15)
}

#[test]
fn strangers_are_refused_while_the_attempt_starts_and_find_no_port_once_it_runs() {
    let broker = common::fraud_broker();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &[]);
    let logs = [dir.path().join("tm0.log"), dir.path().join("tm1.log")];
    for log in &logs {
        cluster.add_task_manager_logged(1, log, None);
    }
    cluster.wait_task_managers(2);
    let client = cluster.client();
    let tm_pids: Vec<u32> = cluster.tms.iter().map(|p| p.0.id()).collect();

    let writer = common::write_payments(&broker, &profile(), PAYMENTS, 4_000, 1_000);

    let out = Command::new(env!("CARGO_BIN_EXE_fraud"))
        .args(["submit", "--job-manager", &cluster.url, "--token", TOKEN])
        .args(["--parallelism", "2", "--checkpoint-interval-ms", "300"])
        .args(["--", "--brokers", &broker.brokers(), "--state-cache-entries", "64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // --- While the attempt starts ------------------------------------------------------
    // Hold worker 1 the moment it exists: worker 0 then waits for it with its port open.
    let (w0, w1) = hold_worker_1(&tm_pids);
    let attempt = client.job(&id).unwrap().attempt.unwrap_or(1);
    let mut attacker = Attacker::start(
        &["--pid", &w0.to_string(), "--pid", &w1.to_string(), "--watch", "60"],
        attempt,
    );
    attacker.wait_for("the attacker's connections to worker 0 to be queued", |e| {
        e["event"] == "queued" && e["pid"] == w0
    });
    signal(w1, "CONT");
    let startup = attacker.finish();
    let ports: BTreeMap<u64, u64> = startup
        .iter()
        .filter(|e| e["event"] == "queued")
        .map(|e| (e["pid"].as_u64().unwrap(), e["port"].as_u64().unwrap()))
        .collect();
    println!("startup attack: {}", summary(&startup));
    check_results(&startup, DEADLINE + SLACK).unwrap();
    // Worker 0 was held back: every attack on it reached its handshake.
    for (mode, _) in REASONS {
        let reached = outcome(&startup, w0, mode, "rejected");
        let at_least = if mode == "idle" { 100 } else { 1 };
        assert!(
            reached >= at_least,
            "{mode}: {reached} connections reached worker 0: {}",
            summary(&startup)
        );
    }

    let running = cluster.wait_job(&id, "the job to run and checkpoint", Duration::from_secs(90), |d| {
        d.summary.state == JobState::Running && d.summary.last_checkpoint.is_some()
    });
    assert_eq!(
        running.attempt,
        Some(attempt),
        "the attempt that was attacked runs; the job's exceptions: {:?}\ntask manager logs end:\n{}",
        running.exceptions,
        logs.iter()
            .map(|l| {
                let text = std::fs::read_to_string(l).unwrap_or_default();
                let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" INFO ")).collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n--\n")
    );
    // Each worker counted every attack that reached it, under its reason, and nothing else.
    for (worker, pid) in [(0, w0), (1, w1)] {
        let expected = expected_refusals(&startup, pid);
        floe_testkit::wait_for(
            &format!("worker {worker} to report its refusals {expected:?}"),
            Duration::from_secs(30),
            || (refusals(&client.metrics_text().ok()?, &id, worker) == expected).then_some(()),
        );
    }
    // No allocation followed the lies: the peak is the job's own.
    for pid in [w0, w1] {
        let (rss, peak) = (memory_kb(pid, "VmRSS"), memory_kb(pid, "VmHWM"));
        println!("worker {pid}: {} MiB resident, peak {} MiB", rss / 1024, peak / 1024);
        assert!(
            peak <= rss + RSS_BOUND_KB,
            "worker {pid} peaked at {peak} kB with {rss} kB resident now"
        );
    }

    // --- While it runs ------------------------------------------------------------------
    let before: Vec<u64> = [w0, w1].iter().map(|p| memory_kb(*p, "VmRSS")).collect();
    let metrics_before: Vec<_> = (0..2)
        .map(|w| refusals(&client.metrics_text().unwrap(), &id, w))
        .collect();
    let mut args = vec!["--pid".to_string(), w0.to_string(), "--pid".into(), w1.to_string()];
    for port in ports.values() {
        args.extend(["--target".to_string(), format!("127.0.0.1:{port}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let later = Attacker::start(&args, attempt).finish();
    println!("attack while running: {}", summary(&later));
    check_results(&later, DEADLINE + SLACK).unwrap();
    for e in later.iter().filter(|e| e["event"] == "listening") {
        assert_eq!(
            e["ports"],
            Value::Array(Vec::new()),
            "a running worker listens on no port: {e}"
        );
    }
    for e in later.iter().filter(|e| e["event"] == "result") {
        assert_eq!(e["outcomes"].as_object().map(|o| o.len()), Some(1), "{e}");
        assert!(e["outcomes"]["refused"].as_u64().is_some(), "refused by the OS: {e}");
    }
    for (pid, before) in [w0, w1].into_iter().zip(before) {
        let after = memory_kb(pid, "VmRSS");
        assert!(
            after <= before + RSS_BOUND_KB,
            "worker {pid}: {before} kB -> {after} kB"
        );
    }
    let metrics_after: Vec<_> = (0..2)
        .map(|w| refusals(&client.metrics_text().unwrap(), &id, w))
        .collect();
    assert_eq!(metrics_after, metrics_before, "nothing reached a worker");

    // --- The job was not hurt -------------------------------------------------------------
    writer.join().unwrap().unwrap();
    cluster::advance_event_time(&broker, "payments", 4);
    let all: Vec<Payment> = (0..PAYMENTS).map(|i| profile().payment(i)).collect();
    cluster::assert_alerts_exact(&broker, &all);
    assert_eq!(
        broker.read_committed("payments-dlq").unwrap().records.len() as u64,
        PAYMENTS / 1_000,
        "each malformed payment in the DLQ once"
    );
    let detail = client.job(&id).unwrap();
    assert_eq!(detail.summary.restarts, 0, "{:?}", detail.exceptions);
    assert!(detail.exceptions.is_empty(), "{:?}", detail.exceptions);
    assert_eq!(detail.attempt, Some(attempt));
    let cancelled = client.cancel(&id).unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    drop(cluster);
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a panic in {}:\n{text}", log.display());
    }
}

/// The checker above, given what a worker that lets strangers in would produce: it must
/// fail on each fault.
#[test]
fn the_attacker_and_its_checker_catch_a_worker_that_lets_strangers_in() {
    // Challenges, then keeps every connection open without a word.
    let lenient = fake_worker(|_| std::thread::sleep(Duration::from_secs(30)));
    let found = attack(lenient, &["--idle", "2", "--verdict-after", "2"]);
    let e = check_results(&found, DEADLINE + SLACK).unwrap_err();
    assert!(e.contains("open"), "{e}");
    // Challenges, then answers whatever it is sent (as if the MAC were good).
    let trusting = fake_worker(|s| {
        let mut byte = [0u8; 1];
        if s.read_exact(&mut byte).is_ok() {
            let _ = s.write_all(&[32, 0, 0, 0]);
            let _ = s.write_all(&[0; 32]);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let found = attack(trusting, &["--idle", "0", "--verdict-after", "5"]);
    let e = check_results(&found, DEADLINE + SLACK).unwrap_err();
    assert!(e.contains("answered"), "{e}");
    // Refuses, but only after ten seconds.
    let slow = fake_worker(|_| std::thread::sleep(Duration::from_secs(10)));
    let found = attack(slow, &["--modes", "wrong-secret", "--verdict-after", "20"]);
    let e = check_results(&found, DEADLINE + SLACK).unwrap_err();
    assert!(e.contains("after"), "{e}");
    // And refusals in time pass.
    let strict = fake_worker(|_| {});
    let found = attack(strict, &["--idle", "3"]);
    check_results(&found, DEADLINE + SLACK).unwrap();
    assert_eq!(outcome(&found, 0, "idle", "rejected"), 3);
}

/// Fails with a description unless every connection was refused (by the worker within
/// `bound` seconds of its challenge, or by the operating system) and the attacker ended.
fn check_results(events: &[Value], bound: f64) -> Result<(), String> {
    if !events.iter().any(|e| e["event"] == "done") {
        return Err(format!("the attacker did not finish: {events:?}"));
    }
    let results: Vec<&Value> = events.iter().filter(|e| e["event"] == "result").collect();
    if results.is_empty() {
        return Err("no attack was made".into());
    }
    for r in results {
        let outcomes = r["outcomes"].as_object().ok_or(format!("no outcomes: {r}"))?;
        for (outcome, n) in outcomes {
            if !["rejected", "refused", "dropped"].contains(&outcome.as_str()) {
                return Err(format!("{n} `{}` connections {outcome}: {r}", r["mode"]));
            }
        }
        if let Some(s) = r["max_seconds"].as_f64().filter(|s| *s > bound) {
            return Err(format!("`{}` refused only after {s} s: {r}", r["mode"]));
        }
    }
    Ok(())
}

/// Connections of `mode` on process `pid` (0: any) with `outcome`.
fn outcome(events: &[Value], pid: u32, mode: &str, outcome: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["event"] == "result" && e["mode"] == mode && (pid == 0 || e["pid"] == pid))
        .filter_map(|e| e["outcomes"][outcome].as_u64())
        .sum()
}

/// The refusals worker `pid` must have counted: one per attack that reached its handshake.
fn expected_refusals(events: &[Value], pid: u32) -> BTreeMap<String, u64> {
    let mut expected = BTreeMap::new();
    for (mode, reason) in REASONS {
        let n = outcome(events, pid, mode, "rejected");
        if n > 0 {
            *expected.entry(reason.to_string()).or_insert(0) += n;
        }
    }
    expected
}

/// `floe_net_rejected_connections_total` of worker `worker` of job `job`, by reason, from the
/// job manager's metrics.
fn refusals(text: &str, job: &str, worker: usize) -> BTreeMap<String, u64> {
    let (job, worker) = (format!("job=\"{job}\""), format!("worker=\"{worker}\""));
    text.lines()
        .filter(|l| l.starts_with("floe_net_rejected_connections_total{"))
        .filter(|l| l.contains(&job) && l.contains(&worker))
        .filter_map(|l| {
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_string();
            let value: u64 = l.rsplit(' ').next()?.parse().ok()?;
            (value > 0).then_some((reason, value))
        })
        .collect()
}

fn summary(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "result")
        .map(|e| format!("{}:{} {} {}", e["port"], e["mode"], e["outcomes"], e["max_seconds"]))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The attacker, running, with its JSON lines arriving on a channel.
struct Attacker {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Attacker {
    fn start(args: &[&str], attempt: u64) -> Attacker {
        // Where cargo runs the test (a shared build cache can hold a binary of another checkout).
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let script = Path::new(&dir).join("../scripts/attack-cluster.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .args(["--attempt", &attempt.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the attacker");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Attacker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to three minutes) for an event that satisfies `ok`.
    fn wait_for(&mut self, what: &str, ok: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.seen.iter().any(&ok) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => panic!("timed out waiting for {what}: {:?}", self.seen),
            }
        }
    }

    /// Waits for the attacker to end, and returns everything it said.
    fn finish(mut self) -> Vec<Value> {
        self.wait_for("the attacker to finish", |e| e["event"] == "done");
        let _ = self.child.wait();
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the attacker against `addr` and returns what it said.
fn attack(addr: std::net::SocketAddr, args: &[&str]) -> Vec<Value> {
    let target = addr.to_string();
    let mut all = vec!["--target", &target];
    all.extend_from_slice(args);
    Attacker::start(&all, 1).finish()
}

/// A listener that challenges each connection like a worker, then does `then` with it.
fn fake_worker(then: fn(&mut std::net::TcpStream)) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = s.write_all(&[32, 0, 0, 0]);
                let _ = s.write_all(&[1; 32]);
                then(&mut s);
            });
        }
    });
    addr
}

/// Finds the workers of the task managers `tms` as they start, stopping worker 1 (SIGSTOP)
/// the moment it exists (looked for every millisecond: long before it can have connected
/// to worker 0). Returns the pids of workers 0 and 1.
fn hold_worker_1(tms: &[u32]) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held = None;
    loop {
        let workers = workers_of(tms);
        if let (None, Some(&w1)) = (held, workers.get(&1)) {
            signal(w1, "STOP");
            held = Some(w1);
        }
        if let (Some(&w0), Some(w1)) = (workers.get(&0), held) {
            return (w0, w1);
        }
        assert!(Instant::now() < deadline, "the workers did not start: {workers:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The worker processes of the task managers `tms`, by worker index.
fn workers_of(tms: &[u32]) -> BTreeMap<usize, u32> {
    floe_testkit::children(tms)
        .into_iter()
        .filter_map(|(pid, _)| {
            // Between fork and exec the child has its task manager's environment: no spec.
            let spec = floe_testkit::environ(pid, "FLOE_WORKER_SPEC")?;
            let index = serde_json::from_str::<Value>(&spec).ok()?["worker"].as_u64()?;
            Some((index as usize, pid))
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
fn memory_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for {pid}"))
}
