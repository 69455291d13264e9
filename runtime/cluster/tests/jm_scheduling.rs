//! The job manager's scheduling and recovery, over real HTTP: fake task managers (threads
//! that register and heartbeat like real ones, and run no processes) and fake workers
//! (hellos, events, command polls sent by the test).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use floe_cluster::jobmanager::{JobManager, JobManagerConfig, RunningJobManager};
use floe_cluster::protocol::{HeartbeatResponse, RegisterResponse, TmCommand, WorkerSpec, WorkerState, WorkerStatus};
use floe_testkit::{wait_until, DEADLINE};
use serde_json::{json, Value};

/// The heartbeat timeout of the lost-task-manager test: long enough that the task manager
/// that keeps beating is not lost too when a loaded machine holds its thread up.
const TIMEOUT_MS: u64 = 2_000;

/// A REST caller with the token.
#[derive(Clone)]
struct Api {
    url: String,
    token: String,
}

impl Api {
    fn of(jm: &RunningJobManager) -> Self {
        Api {
            url: jm.url().to_string(),
            token: jm.token().to_string(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{path}", self.url))
            .timeout(Duration::from_secs(30))
            .set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match result {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path} answered {status}: {v}");
        v
    }

    fn upload(&self) -> String {
        let r = ureq::post(&format!("{}/api/v1/artifacts", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
            .send_bytes(b"#!/bin/sh\nexit 0\n")
            .unwrap();
        let v: Value = r.into_json().unwrap();
        v["sha256"].as_str().unwrap().to_string()
    }

    fn submit(&self, parallelism: usize, restart: Value) -> String {
        let artifact = self.upload();
        let v = self.ok(
            "POST",
            "/api/v1/jobs",
            Some(json!({"artifact": artifact, "parallelism": parallelism, "restart": restart})),
        );
        v["id"].as_str().unwrap().to_string()
    }

    fn job(&self, id: &str) -> Value {
        self.ok("GET", &format!("/api/v1/jobs/{id}"), None)
    }

    fn events(&self, attempt: u64, events: Value) {
        self.ok("POST", &format!("/api/v1/attempts/{attempt}/events"), Some(events));
    }
}

/// What a fake task manager saw and reports.
#[derive(Default)]
struct TmState {
    url: String,
    id: String,
    workers: BTreeMap<(u64, usize), WorkerState>,
    /// When the last heartbeat was sent (before it was sent).
    last_beat: Option<Instant>,
    deployed: Vec<WorkerSpec>,
    killed: Vec<(u64, usize)>,
    unknown_seen: bool,
}

/// A task manager thread: registers, heartbeats every 20 ms (long poll of 100 ms), applies
/// commands; on `unknown` it registers again (keeping its workers, to see them killed).
struct FakeTm {
    state: Arc<Mutex<TmState>>,
    beating: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn register(url: &str, token: &str, slots: usize) -> String {
    let r: RegisterResponse = ureq::post(&format!("{url}/api/v1/taskmanagers"))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(json!({"slots": slots, "host": "127.0.0.1", "pid": 42}))
        .unwrap()
        .into_json()
        .unwrap();
    r.id
}

impl FakeTm {
    /// Waits for a deployment and answers its attempt.
    fn await_deploy(&self) -> u64 {
        wait_until("deploy", DEADLINE, || self.last_deploy().is_some());
        self.last_deploy().unwrap().attempt
    }

    fn start(api: &Api, slots: usize) -> Self {
        let state = Arc::new(Mutex::new(TmState {
            url: api.url.clone(),
            id: register(&api.url, &api.token, slots),
            ..Default::default()
        }));
        let beating = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, b, st, token) = (state.clone(), beating.clone(), stop.clone(), api.token.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
                if !b.load(Ordering::SeqCst) {
                    continue;
                }
                let (url, id, workers) = {
                    let mut s = s.lock().unwrap();
                    s.last_beat = Some(Instant::now());
                    let workers: Vec<WorkerStatus> = s
                        .workers
                        .iter()
                        .map(|((attempt, worker), state)| WorkerStatus {
                            attempt: *attempt,
                            worker: *worker,
                            state: state.clone(),
                        })
                        .collect();
                    (s.url.clone(), s.id.clone(), workers)
                };
                let answer = ureq::post(&format!("{url}/api/v1/taskmanagers/{id}/heartbeat"))
                    .set("Authorization", &format!("Bearer {token}"))
                    .send_json(json!({"workers": workers, "wait_ms": 100}));
                let Ok(answer) = answer else { continue };
                let Ok(answer) = answer.into_json::<HeartbeatResponse>() else {
                    continue;
                };
                let mut s = s.lock().unwrap();
                if answer.unknown {
                    s.unknown_seen = true;
                    if let Ok(r) = ureq::post(&format!("{url}/api/v1/taskmanagers"))
                        .set("Authorization", &format!("Bearer {token}"))
                        .send_json(json!({"slots": slots, "host": "127.0.0.1", "pid": 42}))
                    {
                        if let Ok(r) = r.into_json::<RegisterResponse>() {
                            s.id = r.id;
                        }
                    }
                    continue;
                }
                for command in answer.commands {
                    match command {
                        TmCommand::Deploy { spec } => {
                            s.workers.insert((spec.attempt, spec.worker), WorkerState::Running);
                            s.deployed.push(*spec);
                        }
                        TmCommand::Kill { attempt, worker } => {
                            s.workers.remove(&(attempt, worker));
                            s.killed.push((attempt, worker));
                        }
                        TmCommand::Forget { attempt, worker } => {
                            if matches!(s.workers.get(&(attempt, worker)), Some(WorkerState::Exited { .. })) {
                                s.workers.remove(&(attempt, worker));
                            }
                        }
                    }
                }
            }
        });
        FakeTm {
            state,
            beating,
            stop,
            thread: Some(thread),
        }
    }

    fn id(&self) -> String {
        self.state.lock().unwrap().id.clone()
    }

    fn deployed(&self) -> Vec<WorkerSpec> {
        self.state.lock().unwrap().deployed.clone()
    }

    fn last_deploy(&self) -> Option<WorkerSpec> {
        self.deployed().last().cloned()
    }

    fn killed(&self) -> Vec<(u64, usize)> {
        self.state.lock().unwrap().killed.clone()
    }

    fn exit(&self, attempt: u64, worker: usize, code: i32, stderr: &str) {
        self.state.lock().unwrap().workers.insert(
            (attempt, worker),
            WorkerState::Exited {
                code: Some(code),
                stderr: stderr.into(),
            },
        );
    }
}

impl Drop for FakeTm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A job manager with a short heartbeat timeout (the lost-TM test), or a generous one
/// (the others, so that a loaded machine cannot fake a lost task manager).
fn start_jm_with(dir: &std::path::Path, timeout_ms: u64) -> RunningJobManager {
    let mut config = JobManagerConfig::new(dir);
    config.heartbeat_interval_ms = 100;
    config.heartbeat_timeout_ms = timeout_ms;
    JobManager::start(config).unwrap()
}

fn start_jm(dir: &std::path::Path) -> RunningJobManager {
    start_jm_with(dir, 5_000)
}

fn fixed(attempts: u32) -> Value {
    json!({"type": "fixed-delay", "attempts": attempts, "delay_ms": 50})
}

fn state_of(api: &Api, job: &str) -> String {
    api.job(job)["state"].as_str().unwrap().to_string()
}

fn running(api: &Api, attempt: u64, workers: usize) {
    let events: Vec<Value> = (0..workers)
        .map(|w| json!({"event": "running", "worker": w, "graph": null}))
        .collect();
    api.events(attempt, Value::Array(events));
}

#[test]
fn deploy_spreads_rendezvous_and_restart_after_exit() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 2);
    let b = FakeTm::start(&api, 2);
    let job = api.submit(2, fixed(3));
    wait_until("deploys", DEADLINE, || {
        a.last_deploy().is_some() && b.last_deploy().is_some()
    });
    let (sa, sb) = (a.last_deploy().unwrap(), b.last_deploy().unwrap());
    assert_eq!(sa.attempt, sb.attempt);
    assert_eq!((sa.worker, sb.worker), (0, 1));
    assert_eq!(sa.workers, 2);
    assert_eq!(sa.placement, vec![0, 1]);
    assert_eq!(sa.host, "127.0.0.1");
    assert_eq!(sa.restore_from, None);
    let checkpoints = jm.data_dir().join("checkpoints").join(&job);
    assert_eq!(sa.checkpoint_dir, checkpoints.to_string_lossy());
    assert_eq!(state_of(&api, &job), "deploying");
    let attempt = sa.attempt;

    // Rendezvous: the long poll answers once both workers said hello.
    let (status, early) = api.call("GET", &format!("/api/v1/attempts/{attempt}/peers?wait_ms=0"), None);
    assert_eq!((status, early["addrs"].clone()), (200, Value::Null));
    let poller = {
        let api = api.clone();
        std::thread::spawn(move || api.ok("GET", &format!("/api/v1/attempts/{attempt}/peers?wait_ms=20000"), None))
    };
    api.ok(
        "POST",
        &format!("/api/v1/attempts/{attempt}/workers/0"),
        Some(json!({"addr": "127.0.0.1:7000"})),
    );
    api.ok(
        "POST",
        &format!("/api/v1/attempts/{attempt}/workers/1"),
        Some(json!({"addr": "127.0.0.1:7001"})),
    );
    let peers = poller.join().unwrap();
    assert_eq!(peers["addrs"], json!(["127.0.0.1:7000", "127.0.0.1:7001"]));
    assert_eq!(peers["cancelled"], json!(false));

    running(&api, attempt, 2);
    assert_eq!(state_of(&api, &job), "running");
    let tms = api.ok("GET", "/api/v1/taskmanagers", None);
    assert_eq!(tms.as_array().unwrap().len(), 2);
    assert_eq!(tms[0]["slots_used"], json!(1));

    // Worker 1 dies: worker 0 is killed, a new attempt is deployed, the failure recorded.
    b.exit(attempt, 1, 1, "thread 'main' panicked at src/main.rs:3: boom");
    wait_until("redeploy", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > attempt) && b.last_deploy().is_some_and(|s| s.attempt > attempt)
    });
    assert!(a.killed().contains(&(attempt, 0)));
    let detail = api.job(&job);
    assert_eq!(detail["restarts"], json!(1));
    let message = detail["exceptions"][0]["message"].as_str().unwrap();
    assert!(message.contains("worker 1") && message.contains(&b.id()), "{message}");
    assert!(message.contains("code 1") && message.contains("boom"), "{message}");
    assert_eq!(detail["exceptions"][0]["attempt"], json!(attempt));
    let states: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "scheduled",
            "deploying",
            "running",
            "restarting",
            "scheduled",
            "deploying"
        ]
    );
    // The old attempt's peers are cancelled.
    let old = api.ok("GET", &format!("/api/v1/attempts/{attempt}/peers?wait_ms=0"), None);
    assert_eq!(old["cancelled"], json!(true));
}

#[test]
fn lost_task_manager_is_detected_and_its_job_moves() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm_with(dir.path(), TIMEOUT_MS);
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 2);
    let b = FakeTm::start(&api, 2);
    let job = api.submit(2, fixed(3));
    wait_until("deploys", DEADLINE, || {
        a.last_deploy().is_some() && b.last_deploy().is_some()
    });
    let attempt = a.last_deploy().unwrap().attempt;
    running(&api, attempt, 2);

    b.beating.store(false, Ordering::SeqCst);
    wait_until("loss of the task manager", DEADLINE, || {
        api.job(&job)["exceptions"].as_array().is_some_and(|e| !e.is_empty())
    });
    // Not before the timeout: the job manager stamps a heartbeat when it arrives, which is
    // after the fake sent it. How soon after the timeout depends on the scheduler of a
    // loaded machine, so it is pinned where time is the test's own: the state machine's
    // `lost_task_manager_moves_the_job` (cluster_tests.rs) ticks at the exact millisecond.
    let last_beat = b.state.lock().unwrap().last_beat.expect("a heartbeat was sent");
    let silent = last_beat.elapsed();
    assert!(
        silent > Duration::from_millis(TIMEOUT_MS),
        "lost after {silent:?} of silence, timeout {TIMEOUT_MS} ms"
    );
    let message = api.job(&job)["exceptions"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&b.id()) && message.contains("no heartbeat"),
        "{message}"
    );
    let reported: u64 = message
        .split("no heartbeat for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no silence in {message}"));
    assert!(reported > TIMEOUT_MS, "{message}");
    // The job moves to the remaining task manager, which has both slots.
    wait_until("redeploy on the remaining task manager", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > attempt)
    });
    let spec = a.last_deploy().unwrap();
    assert_eq!((spec.workers, spec.placement.clone()), (1, vec![0, 0]));
    assert!(a.killed().contains(&(attempt, 0)));
    let tms = api.ok("GET", "/api/v1/taskmanagers", None);
    assert_eq!(tms.as_array().unwrap().len(), 1);
    // When it comes back it is told it is unknown.
    b.beating.store(true, Ordering::SeqCst);
    wait_until("unknown answer", DEADLINE, || b.state.lock().unwrap().unknown_seen);
}

#[test]
fn exhausted_restart_strategy_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 1);
    let job = api.submit(1, fixed(1));
    let first = a.await_deploy();
    api.events(
        first,
        json!([{"event": "failed", "worker": 0, "error": "sink unreachable"}]),
    );
    wait_until("restart", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > first)
    });
    let second = a.last_deploy().unwrap().attempt;
    a.exit(second, 0, 2, "still unreachable");
    wait_until("failure", DEADLINE, || state_of(&api, &job) == "failed");
    let detail = api.job(&job);
    let reason = detail["history"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("exhausted") && reason.contains("code 2"), "{reason}");
    assert_eq!(detail["exceptions"].as_array().unwrap().len(), 2);
    assert_eq!(detail["attempt"], Value::Null);
    let metrics = ureq::get(&format!("{}/metrics", api.url))
        .set("Authorization", &format!("Bearer {}", api.token))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(&format!("floe_job_restarts_total{{job=\"{job}\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains("floe_jobs{state=\"failed\"} 1"), "{metrics}");
}

#[test]
fn savepoint_stop_and_resume_go_through_worker_zero() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 2);
    let job = api.submit(1, fixed(3));
    let attempt = a.await_deploy();
    running(&api, attempt, 1);
    api.events(
        attempt,
        json!([{"event": "metrics", "worker": 0, "prometheus": "# TYPE floe_records_in_total counter\nfloe_records_in_total{operator=\"src\"} 12\n", "operators": []},
               {"event": "checkpoint-completed", "id": 3, "bytes": 100, "duration_ms": 7, "is_savepoint": false}]),
    );

    let asker = {
        let (api, job) = (api.clone(), job.clone());
        std::thread::spawn(move || api.call("POST", &format!("/api/v1/jobs/{job}/savepoint"), Some(json!({}))))
    };
    let commands = api.ok(
        "GET",
        &format!("/api/v1/attempts/{attempt}/commands?wait_ms=20000"),
        None,
    );
    assert_eq!(commands[0]["command"], json!("savepoint"));
    assert_eq!(commands[0]["stop"], json!(false));
    let sp_dir = commands[0]["dir"].as_str().unwrap().to_string();
    let expected = jm.data_dir().join("savepoints").join(&job).join("sp-1");
    assert_eq!(sp_dir, expected.to_string_lossy());
    let request = commands[0]["request"].clone();
    api.events(
        attempt,
        json!([{"event": "savepoint-completed", "request": request, "dir": sp_dir, "checkpoint": 4}]),
    );
    let (status, info) = asker.join().unwrap();
    assert_eq!(status, 200, "{info}");
    assert_eq!(info, json!({"job": job, "dir": sp_dir, "checkpoint": 4}));

    let metrics = ureq::get(&format!("{}/metrics", api.url))
        .set("Authorization", &format!("Bearer {}", api.token))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "floe_records_in_total{{job=\"{job}\",worker=\"0\",operator=\"src\"}} 12"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("floe_checkpoint_duration_ms{{job=\"{job}\"}} 7")),
        "{metrics}"
    );

    // Stop: a savepoint with stop, the worker exits 0, the job is stopped.
    let stopper = {
        let (api, job) = (api.clone(), job.clone());
        std::thread::spawn(move || api.call("POST", &format!("/api/v1/jobs/{job}/stop"), None))
    };
    let commands = api.ok(
        "GET",
        &format!("/api/v1/attempts/{attempt}/commands?wait_ms=20000"),
        None,
    );
    assert_eq!(commands[0]["stop"], json!(true));
    assert_eq!(state_of(&api, &job), "stopping");
    let stop_dir = commands[0]["dir"].as_str().unwrap().to_string();
    api.events(
        attempt,
        json!([{"event": "savepoint-completed", "request": commands[0]["request"], "dir": stop_dir, "checkpoint": 5}]),
    );
    a.exit(attempt, 0, 0, "");
    let (status, info) = stopper.join().unwrap();
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["dir"], json!(stop_dir));
    let detail = api.job(&job);
    assert_eq!(detail["state"], json!("stopped"));
    assert_eq!(detail["savepoint"], json!(stop_dir));

    // A savepoint of a stopped job is refused; resuming deploys from the savepoint.
    let (status, err) = api.call("POST", &format!("/api/v1/jobs/{job}/savepoint"), None);
    assert_eq!(status, 409, "{err}");
    assert!(err["error"].as_str().unwrap().contains("stopped"), "{err}");
    api.ok(
        "POST",
        &format!("/api/v1/jobs/{job}/resume"),
        Some(json!({"parallelism": 2})),
    );
    wait_until("resumed deploy", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > attempt)
    });
    let spec = a.last_deploy().unwrap();
    assert_eq!(spec.restore_from.as_deref(), Some(stop_dir.as_str()));
    assert_eq!(spec.parallelism, 2);
}

#[test]
fn cancel_kills_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 1);
    let b = FakeTm::start(&api, 1);
    let job = api.submit(2, fixed(3));
    wait_until("deploys", DEADLINE, || {
        a.last_deploy().is_some() && b.last_deploy().is_some()
    });
    let attempt = a.last_deploy().unwrap().attempt;
    running(&api, attempt, 2);
    let summary = api.ok("POST", &format!("/api/v1/jobs/{job}/cancel"), None);
    assert_eq!(summary["state"], json!("cancelled"));
    wait_until("kills", DEADLINE, || {
        a.killed().contains(&(attempt, 0)) && b.killed().contains(&(attempt, 1))
    });
    let peers = api.ok("GET", &format!("/api/v1/attempts/{attempt}/peers?wait_ms=0"), None);
    assert_eq!(peers["cancelled"], json!(true));
    let (status, err) = api.call("POST", &format!("/api/v1/jobs/{job}/cancel"), None);
    assert_eq!(status, 409, "{err}");
}

#[test]
fn job_manager_restart_redeploys_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 2);
    let job = api.submit(1, fixed(3));
    let old_attempt = a.await_deploy();
    running(&api, old_attempt, 1);
    let old_tm = a.id();
    jm.shutdown();

    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    assert_eq!(state_of(&api, &job), "scheduled");
    // Point the task manager at the new job manager: it is unknown there, registers again
    // (still reporting its old worker, which it is told to kill), and gets the job.
    a.state.lock().unwrap().url = api.url.clone();
    wait_until("re-registration", DEADLINE, || {
        a.state.lock().unwrap().unknown_seen && a.id() != old_tm
    });
    wait_until("kill of the old worker", DEADLINE, || {
        a.killed().contains(&(old_attempt, 0))
    });
    wait_until("new deploy", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > old_attempt)
    });
    assert_eq!(a.last_deploy().unwrap().job, job);
    assert_eq!(state_of(&api, &job), "deploying");
}

#[test]
fn rescale_stops_with_a_savepoint_and_resumes_wider() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start_jm(dir.path());
    let api = Api::of(&jm);
    let a = FakeTm::start(&api, 1);
    let b = FakeTm::start(&api, 2);
    let job = api.submit(1, fixed(3));
    let attempt = a.await_deploy();
    running(&api, attempt, 1);
    let rescaler = {
        let (api, job) = (api.clone(), job.clone());
        std::thread::spawn(move || {
            api.call(
                "POST",
                &format!("/api/v1/jobs/{job}/rescale"),
                Some(json!({"parallelism": 3})),
            )
        })
    };
    let commands = api.ok(
        "GET",
        &format!("/api/v1/attempts/{attempt}/commands?wait_ms=20000"),
        None,
    );
    assert_eq!(commands[0]["stop"], json!(true));
    let sp = commands[0]["dir"].as_str().unwrap().to_string();
    api.events(
        attempt,
        json!([{"event": "savepoint-completed", "request": commands[0]["request"], "dir": sp, "checkpoint": 8},
               {"event": "finished", "worker": 0}]),
    );
    a.exit(attempt, 0, 0, "");
    let (status, summary) = rescaler.join().unwrap();
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["parallelism"], json!(3));
    wait_until("wider deploy", DEADLINE, || {
        a.last_deploy().is_some_and(|s| s.attempt > attempt) && b.last_deploy().is_some()
    });
    let spec = b.last_deploy().unwrap();
    assert_eq!(spec.placement, vec![0, 1, 1]);
    assert_eq!(spec.restore_from.as_deref(), Some(sp.as_str()));
    let detail = api.job(&job);
    assert_eq!(detail["parallelism"], json!(3));
    let reasons: Vec<String> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("resumed from savepoint")),
        "{reasons:?}"
    );
}
