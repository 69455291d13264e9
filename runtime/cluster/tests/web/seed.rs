//! Gives a job manager something to show, through its real REST API only: an uploaded
//! artifact, a submitted job, a task manager that registers and heartbeats over HTTP, and a
//! worker that says hello and posts events (Running with a graph of three operators,
//! Metrics, two completed checkpoints) and answers savepoint commands.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use floe_cluster::protocol::{
    ArtifactInfo, Heartbeat, HeartbeatResponse, JobDetail, JobState, JobSummary, OperatorMetrics, RegisterRequest,
    RegisterResponse, SubmitRequest, TmCommand, WorkerCommand, WorkerEvent, WorkerHello, WorkerSpec, WorkerState,
    WorkerStatus, NAME_HEADER,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// The seeded job's name.
pub const JOB_NAME: &str = "web-page-test-job";
/// The names of the seeded graph's operators, by node id.
pub const OPERATORS: [&str; 3] = ["clicks-source", "parse-clicks", "count-per-user"];
/// The ids of the seeded checkpoints (the newest last).
pub const CHECKPOINTS: [u64; 2] = [41, 42];
/// How long seeding may take (generous: CI machines are busy).
const SEED_DEADLINE: Duration = Duration::from_secs(60);
/// The checkpoint id the fake worker answers a savepoint with.
pub const SAVEPOINT_CHECKPOINT: u64 = 43;

/// A client of the job manager's REST API.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    /// A client of the job manager at `base` (no trailing slash) with `token`.
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    fn answer<T: DeserializeOwned>(what: &str, result: Result<ureq::Response, ureq::Error>) -> T {
        match result {
            Ok(resp) => resp
                .into_json()
                .unwrap_or_else(|e| panic!("{what}: the answer is not the expected JSON: {e}")),
            Err(ureq::Error::Status(code, resp)) => panic!(
                "{what}: the job manager answered {code}: {}",
                resp.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// `GET /api/v1/{path}`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let req = self.agent.get(&self.url(path)).set("Authorization", &self.bearer());
        Self::answer(&format!("GET {path}"), req.call())
    }

    /// `POST /api/v1/{path}` with a JSON body.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> T {
        let req = self.agent.post(&self.url(path)).set("Authorization", &self.bearer());
        Self::answer(&format!("POST {path}"), req.send_json(body))
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The job's detail.
    pub fn job(&self, id: &str) -> JobDetail {
        self.get(&format!("jobs/{id}"))
    }

    /// Polls the job until `done` holds, for up to `timeout`.
    pub fn wait_job(&self, id: &str, what: &str, timeout: Duration, done: impl Fn(&JobDetail) -> bool) -> JobDetail {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id);
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for job {id} to be {what}; it is: {job:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A seeded job manager: the job, its fake task manager and worker (stopped on drop).
pub struct Seeded {
    /// The job's id.
    pub job: String,
    /// The running attempt.
    pub attempt: u64,
    stop: Vec<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Seeded {
    fn drop(&mut self) {
        self.stop.clear(); // closing the channels stops the threads
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The graph worker 0 reports: a source chained to a parser, hashed to a counter.
pub fn graph() -> Value {
    json!({
        "name": JOB_NAME,
        "nodes": [
            { "id": 0, "name": OPERATORS[0], "kind": "source", "parallelism": 2, "chained_to": null },
            { "id": 1, "name": OPERATORS[1], "kind": "operator", "parallelism": 2, "chained_to": 0 },
            { "id": 2, "name": OPERATORS[2], "kind": "operator", "parallelism": 2, "chained_to": null }
        ],
        "edges": [
            { "from": 0, "to": 1, "input": 0, "ship": "forward", "side_output": null, "chained": true },
            { "from": 1, "to": 2, "input": 0, "ship": "hash", "side_output": null, "chained": false }
        ]
    })
}

fn operator_metrics() -> Vec<OperatorMetrics> {
    let op = |node: usize, rin: f64, rout: f64, bp: f64, wm: Option<i64>| OperatorMetrics {
        node,
        name: OPERATORS[node].to_string(),
        records_in: (rin * 60.0) as u64,
        records_out: (rout * 60.0) as u64,
        records_in_per_sec: rin,
        records_out_per_sec: rout,
        backpressure: bp,
        watermark: wm,
    };
    vec![
        op(0, 0.0, 1500.0, 0.85, Some(1_700_000_000_000)),
        op(1, 1500.0, 1500.0, 0.4, Some(1_700_000_000_000)),
        op(2, 1500.0, 20.0, 0.05, Some(1_699_999_999_000)),
    ]
}

/// Uploads a stand-in artifact and submits a job at parallelism 2; answers its id. With no
/// task manager, the job stays `scheduled`.
pub fn submit(api: &Api) -> String {
    let binary = b"#!/bin/sh\necho 'a stand-in job binary: the web test plays its workers'\n";
    let artifact: ArtifactInfo = {
        let req = api
            .agent
            .post(&api.url("artifacts"))
            .set("Authorization", &api.bearer())
            .set(NAME_HEADER, "web-test-binary");
        Api::answer("upload the artifact", req.send_bytes(binary))
    };
    let submitted: JobSummary = api.post(
        "jobs",
        &SubmitRequest {
            artifact: artifact.sha256,
            args: vec![],
            parallelism: 2,
            name: Some(JOB_NAME.to_string()),
            restart: None,
            checkpoint_interval_ms: None,
            savepoint: None,
        },
    );
    submitted.id
}

/// Submits a job (see [`submit`]), registers a task manager with 4 slots, and plays the
/// worker(s) of the attempt it deploys until the job runs with a graph, metrics and two
/// checkpoints.
pub fn seed(api: &Api) -> Seeded {
    let job = submit(api);
    let registered: RegisterResponse = api.post(
        "taskmanagers",
        &RegisterRequest {
            slots: 4,
            host: "127.0.0.1".into(),
            pid: std::process::id(),
        },
    );

    let (deploy_tx, deploy_rx) = mpsc::channel();
    let (tm_stop, tm_stop_rx) = mpsc::channel();
    let tm = {
        let api = api.clone();
        let interval = Duration::from_millis(registered.heartbeat_interval_ms.clamp(50, 1000));
        std::thread::spawn(move || task_manager(api, registered.id, interval, deploy_tx, tm_stop_rx))
    };

    // The specs of one attempt, all of its workers.
    let deadline = Instant::now() + SEED_DEADLINE;
    let mut specs: Vec<WorkerSpec> = Vec::new();
    while specs.is_empty() || specs.len() < specs[0].workers {
        let left = deadline.saturating_duration_since(Instant::now());
        let spec: WorkerSpec = deploy_rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "the job manager deployed no (complete) attempt of {} within {SEED_DEADLINE:?}",
                job
            )
        });
        specs.retain(|s| s.attempt == spec.attempt);
        specs.push(spec);
    }
    let attempt = specs[0].attempt;
    let (w_stop, w_stop_rx) = mpsc::channel();
    let worker = {
        let api = api.clone();
        let workers = specs.len();
        std::thread::spawn(move || play_workers(api, attempt, workers, w_stop_rx))
    };
    let seeded = Seeded {
        job,
        attempt,
        stop: vec![tm_stop, w_stop],
        threads: vec![tm, worker],
    };
    api.wait_job(
        &seeded.job,
        "running with its graph, operators and checkpoints",
        SEED_DEADLINE,
        |j| {
            j.summary.state == JobState::Running
                && j.graph.is_some()
                && !j.operators.is_empty()
                && j.summary.last_checkpoint == Some(CHECKPOINTS[1])
        },
    );
    seeded
}

/// Heartbeats (long polls) as a task manager: reports the deployed workers as running,
/// hands Deploy commands' specs to the test, drops killed or forgotten workers.
fn task_manager(api: Api, id: String, interval: Duration, deployed: Sender<WorkerSpec>, stop: Receiver<()>) {
    let mut workers: Vec<WorkerStatus> = Vec::new();
    loop {
        let started = Instant::now();
        let beat = Heartbeat {
            workers: workers.clone(),
            wait_ms: 300,
        };
        let answer: Option<HeartbeatResponse> = api
            .agent
            .post(&api.url(&format!("taskmanagers/{id}/heartbeat")))
            .set("Authorization", &api.bearer())
            .send_json(&beat)
            .ok()
            .and_then(|r| r.into_json().ok());
        for command in answer.map(|a| a.commands).unwrap_or_default() {
            match command {
                TmCommand::Deploy { spec } => {
                    workers.push(WorkerStatus {
                        attempt: spec.attempt,
                        worker: spec.worker,
                        state: WorkerState::Running,
                    });
                    let _ = deployed.send(*spec);
                }
                TmCommand::Kill { attempt, worker } | TmCommand::Forget { attempt, worker } => {
                    workers.retain(|w| !(w.attempt == attempt && w.worker == worker));
                }
            }
        }
        // Pace the loop when the job manager answers at once.
        let pause = interval.saturating_sub(started.elapsed());
        match stop.recv_timeout(pause.min(Duration::from_millis(200))) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Plays the `workers` workers of `attempt`: hello, Running (worker 0 with the graph),
/// two checkpoints, then Metrics every 500 ms and answers to savepoint commands.
fn play_workers(api: Api, attempt: u64, workers: usize, stop: Receiver<()>) {
    for w in 0..workers {
        let _: Value = api.post(
            &format!("attempts/{attempt}/workers/{w}"),
            &WorkerHello {
                addr: format!("127.0.0.1:{}", 40_000 + w),
            },
        );
    }
    let mut events: Vec<WorkerEvent> = (0..workers)
        .map(|w| WorkerEvent::Running {
            worker: w,
            graph: (w == 0).then(graph),
        })
        .collect();
    events.push(metrics_event());
    for (i, id) in CHECKPOINTS.into_iter().enumerate() {
        events.push(WorkerEvent::CheckpointCompleted {
            id,
            bytes: 3_000_000 * (i as u64 + 1),
            duration_ms: 25 + i as u64,
            is_savepoint: false,
        });
    }
    let _: Value = api.post(&format!("attempts/{attempt}/events"), &events);
    loop {
        let started = Instant::now();
        let commands: Vec<WorkerCommand> = api
            .agent
            .get(&api.url(&format!("attempts/{attempt}/commands?wait_ms=500")))
            .set("Authorization", &api.bearer())
            .call()
            .ok()
            .and_then(|r| r.into_json().ok())
            .unwrap_or_default();
        let mut events = vec![metrics_event()];
        for command in commands {
            if let WorkerCommand::Savepoint { request, dir, .. } = command {
                events.push(WorkerEvent::CheckpointCompleted {
                    id: SAVEPOINT_CHECKPOINT,
                    bytes: 9_000_000,
                    duration_ms: 40,
                    is_savepoint: true,
                });
                events.push(WorkerEvent::SavepointCompleted {
                    request,
                    dir,
                    checkpoint: SAVEPOINT_CHECKPOINT,
                });
            }
        }
        let _ = api
            .agent
            .post(&api.url(&format!("attempts/{attempt}/events")))
            .set("Authorization", &api.bearer())
            .send_json(&events);
        // A long poll that came back early (a command, or an ended attempt) must not spin.
        let pause = Duration::from_millis(500).saturating_sub(started.elapsed());
        match stop.recv_timeout(pause.max(Duration::from_millis(10))) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

fn metrics_event() -> WorkerEvent {
    WorkerEvent::Metrics {
        worker: 0,
        prometheus: "# a stand-in worker\n".into(),
        operators: operator_metrics(),
    }
}
