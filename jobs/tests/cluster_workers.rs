//! What a worker process may know and how long it may live, checked on real processes: a
//! job manager, task managers and the workers they start.
//!
//! - Workers hold no admin secret: their command line is `<binary> worker` (the job's
//!   arguments, which may carry passwords, travel in the spec in their environment), their
//!   credential opens only their own attempt's endpoints, and `floe status` and the REST job
//!   detail show secret arguments as `<redacted>`.
//! - Their local state is in the task manager's work directory, per job id, mode 0700.
//! - A worker never outlives its task manager: killed with SIGKILL while the worker deploys,
//!   runs, or waits on a broker that is gone, the task manager takes its workers with it
//!   within a second.
//! - Every shipped job binary runs as a worker (`counts-per-key` on two task managers
//!   commits what it commits in one process).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use floe_cluster::client::Client;
use floe_cluster::protocol::JobState;
use floe_dsl::kafka::testing::TestBroker;
use floe_testkit::cluster::{Cluster, TOKEN};
use floe_testkit::{alive, cmdline, environ, floe_bin, wait_for};

/// A password the job is given; it must show nowhere a user of the machine can look.
const SECRET: &str = "hunter2-b7e1";

/// The pid of each live (not zombie) process whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    floe_testkit::children(&[parent])
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// Kills task manager `tm` of `cluster` with SIGKILL and checks that each of `workers` ends
/// within a second.
fn kill_task_manager(cluster: &mut Cluster, tm: usize, workers: &[u32], when: &str) {
    assert!(!workers.is_empty(), "{when}: the task manager runs a worker");
    let proc = &mut cluster.tms[tm].0;
    proc.kill().unwrap();
    proc.wait().unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(1);
    while !workers.iter().all(|w| !alive(*w)) {
        let alive: Vec<_> = workers.iter().filter(|w| alive(**w)).collect();
        assert!(
            Instant::now() < deadline,
            "{when}: workers {alive:?} outlived their task manager by a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("{when}: workers gone {:?} after the task manager", killed.elapsed());
}

fn submit(cluster: &Cluster, binary: &str, parallelism: usize, args: &[&str]) -> String {
    let out = Command::new(binary)
        .args(["submit", "--job-manager", &cluster.url, "--token", TOKEN])
        .args(["--parallelism", &parallelism.to_string(), "--restart", "fixed:20:100"])
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "submit: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The attempt a worker process belongs to, from the spec in its environment.
fn attempt_of(pid: u32) -> Option<u64> {
    let spec = environ(pid, "FLOE_WORKER_SPEC")?;
    serde_json::from_str::<floe_cluster::protocol::WorkerSpec>(&spec)
        .ok()
        .map(|s| s.attempt)
}

/// Waits for an attempt newer than `after` to run, and returns it with its worker on each
/// of task managers `tms`.
fn running_workers(cluster: &Cluster, id: &str, tms: &[usize], after: Option<u64>) -> (u64, Vec<u32>) {
    let detail = cluster.wait_job(id, "a new attempt to run", Duration::from_secs(90), |d| {
        d.summary.state == JobState::Running && d.attempt > after
    });
    let attempt = detail.attempt.expect("a running attempt");
    let workers = wait_for(
        "the attempt's worker on each task manager",
        Duration::from_secs(30),
        || {
            tms.iter()
                .map(|tm| {
                    let mine: Vec<u32> = children(cluster.tms[*tm].0.id())
                        .into_iter()
                        .filter(|w| attempt_of(*w) == Some(attempt))
                        .collect();
                    (mine.len() == 1).then(|| mine[0])
                })
                .collect::<Option<Vec<u32>>>()
        },
    );
    (attempt, workers)
}

#[test]
fn workers_hold_no_admin_secret_keep_state_private_and_die_with_their_task_manager() {
    let mut broker = TestBroker::start().unwrap();
    broker.create_topic("events", 2).unwrap();
    broker.create_topic("counts", 2).unwrap();
    broker.create_topic("events-dlq", 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &[1, 1]);
    let password = format!("sasl.password={SECRET}");
    let id = submit(
        &cluster,
        env!("CARGO_BIN_EXE_kafka-counts"),
        2,
        &[
            "--brokers",
            &broker.brokers(),
            "-X",
            &password,
            "--checkpoint-interval-ms",
            "200",
        ],
    );
    let (attempt, workers) = running_workers(&cluster, &id, &[0, 1], None);

    // What anyone on the machine can read: the command line.
    for w in &workers {
        let line = cmdline(*w);
        assert_eq!(line.get(1).map(String::as_str), Some("worker"), "{line:?}");
        assert_eq!(line.len(), 2, "nothing but the mode word: {line:?}");
    }
    // What the job manager shows: the detail and `floe status`.
    let detail = cluster.client().job(&id).unwrap();
    let shown = detail.args.join(" ");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("sasl.password=<redacted>"), "{shown}");
    let floe = floe_bin();
    let status = Command::new(&floe)
        .args(["status", &id, "--job-manager", &cluster.url, "--token", TOKEN, "--json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("<redacted>") && !status.contains(SECRET), "{status}");

    // The worker's credential: its attempt's endpoints, nothing else.
    let worker = workers[0];
    let credential = environ(worker, "FLOE_TOKEN").expect("the worker has a credential");
    assert_ne!(credential, TOKEN, "a worker never gets the job manager's token");
    let as_worker = Client::new(cluster.url.clone(), Some(credential)).unwrap();
    as_worker
        .peers(attempt, Duration::ZERO)
        .expect("the credential opens its own attempt's endpoints");
    let refused = as_worker.cancel(&id).expect_err("a worker cannot cancel the job");
    assert!(refused.to_string().contains("401"), "{refused}");
    assert!(
        as_worker.peers(attempt + 1, Duration::ZERO).is_err(),
        "nor reach another attempt"
    );
    assert!(as_worker.jobs().is_err(), "nor list jobs");

    // Local state: per task manager, per job id, private.
    for tm in 0..2 {
        let state = dir.path().join(format!("tm{tm}/state/{id}"));
        assert_private(&state);
        let runs: Vec<PathBuf> = std::fs::read_dir(&state).unwrap().flatten().map(|e| e.path()).collect();
        assert!(!runs.is_empty(), "the worker keeps its state in {}", state.display());
        for run in runs {
            assert_private(&run);
        }
    }

    // Killed while running.
    kill_task_manager(&mut cluster, 1, &workers[1..], "running");

    // Killed while deploying: a new task manager is given the lost slot; it is killed as
    // soon as it has started the worker, before the worker has met its peers.
    cluster.add_task_manager(1);
    let tm = cluster.tms[2].0.id();
    let deploying = wait_for(
        "the new task manager to start a worker",
        Duration::from_secs(60),
        || {
            let c: Vec<u32> = children(tm)
                .into_iter()
                .filter(|w| attempt_of(*w) > Some(attempt))
                .collect();
            (!c.is_empty()).then_some(c)
        },
    );
    let deploying_attempt = deploying.iter().filter_map(|w| attempt_of(*w)).max();
    let still_deploying = cluster.client().job(&id).unwrap().summary.state != JobState::Running;
    kill_task_manager(&mut cluster, 2, &deploying, "deploying");
    println!("the attempt was still deploying when its task manager died: {still_deploying}");

    // Killed while the broker is gone: the job waits on it, its worker with it.
    cluster.add_task_manager(1);
    let (_, workers) = running_workers(&cluster, &id, &[0, 3], deploying_attempt);
    broker.kill();
    kill_task_manager(&mut cluster, 3, &workers[1..], "broker down");
    kill_task_manager(&mut cluster, 0, &workers[..1], "broker down, the other task manager");
}

fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{} is private", dir.display());
}

/// Each job binary takes the built-in `worker` word (a task manager starts every job as
/// `<binary> worker`), rather than failing in its own argument parser.
#[test]
fn every_job_binary_knows_the_worker_mode() {
    for binary in [
        env!("CARGO_BIN_EXE_counts-per-key"),
        env!("CARGO_BIN_EXE_fails-per-minute"),
        env!("CARGO_BIN_EXE_kafka-counts"),
        env!("CARGO_BIN_EXE_fraud"),
    ] {
        let out = Command::new(binary)
            .arg("worker")
            .env_remove("FLOE_WORKER_SPEC")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{binary}: a worker needs a spec");
        assert!(err.contains("worker mode is for task managers"), "{binary}: {err}");
    }
}

/// `counts-per-key` (a generator, keyed windows, exactly-once part files) on two task
/// managers commits exactly what it commits in one process.
#[test]
fn counts_per_key_on_a_cluster_commits_what_one_process_commits() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        vec![
            "--events".into(),
            "200000".into(),
            "--keys".into(),
            "50".into(),
            "--output".into(),
            out.to_string_lossy().into_owned(),
        ]
    };
    let local = dir.path().join("local");
    let status = Command::new(env!("CARGO_BIN_EXE_counts-per-key"))
        .args(args(&local))
        .args([
            "--parallelism",
            "2",
            "--checkpoint-interval-ms",
            "200",
            "--checkpoint-dir",
        ])
        .arg(dir.path().join("chk-local"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let cluster = Cluster::start(dir.path(), &[1, 1]);
    let spread = dir.path().join("spread");
    let spread_args = args(&spread);
    let refs: Vec<&str> = spread_args.iter().map(String::as_str).collect();
    let id = submit(&cluster, env!("CARGO_BIN_EXE_counts-per-key"), 2, &refs);
    cluster.wait_job(&id, "the job to finish", Duration::from_secs(120), |d| {
        d.summary.state == JobState::Finished
    });
    let (expected, got) = (committed(&local), committed(&spread));
    assert_eq!(expected.len(), 20 * 50, "a count per key and 10-second window");
    assert!(
        got == expected,
        "{} results spread, {} in one process; missing {:?}, unexpected {:?}",
        got.len(),
        expected.len(),
        expected.difference(&got).take(3).collect::<Vec<_>>(),
        got.difference(&expected).take(3).collect::<Vec<_>>()
    );
}

/// The committed lines of part files in `dir`.
fn committed(dir: &Path) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("part-") && name.ends_with(".jsonl") {
            for line in std::fs::read_to_string(e.path()).unwrap().lines() {
                assert!(lines.insert(line.to_string()), "{line} committed twice");
            }
        }
    }
    lines
}
