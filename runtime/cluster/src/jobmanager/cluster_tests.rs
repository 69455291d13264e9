//! Unit tests of the state machine, without sockets: a fake clock and fake task managers.

use std::path::PathBuf;

use crate::protocol::{
    Heartbeat, JobState, RegisterRequest, RestartStrategy, SubmitRequest, TmCommand, WorkerCommand, WorkerEvent,
    WorkerSpec, WorkerState, WorkerStatus,
};

use super::cluster::{Cluster, ClusterConfig, Refusal};
use super::model::PersistedState;

const T0: i64 = 1_000_000;

fn cluster() -> Cluster {
    Cluster::restore(config(), PersistedState::default(), Vec::new(), T0)
}

fn config() -> ClusterConfig {
    ClusterConfig {
        data_dir: PathBuf::from("/data"),
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 1000,
        savepoint_timeout_ms: 5000,
        stop_grace_ms: 2000,
        deploy_timeout_ms: 10_000,
        attempt_key: floe_runtime::AttemptSecret::from_bytes([7; 32]),
    }
}

fn register(c: &mut Cluster, id: &str, slots: usize, now: i64) {
    c.register(
        id.to_string(),
        RegisterRequest {
            slots,
            host: "127.0.0.1".into(),
            pid: 1,
        },
        now,
    )
    .unwrap();
}

fn submit(c: &mut Cluster, parallelism: usize, restart: RestartStrategy) -> String {
    c.submit(
        "j-000000000001".into(),
        SubmitRequest {
            artifact: "ab".repeat(32),
            args: vec!["--x".into()],
            parallelism,
            name: Some("test".into()),
            restart: Some(restart),
            checkpoint_interval_ms: Some(50),
            savepoint: None,
        },
        T0,
    )
    .unwrap()
    .id
}

fn deploys(c: &mut Cluster, tm: &str) -> Vec<WorkerSpec> {
    c.take_tm_commands(tm)
        .unwrap()
        .into_iter()
        .filter_map(|cmd| match cmd {
            TmCommand::Deploy { spec } => Some(*spec),
            _ => None,
        })
        .collect()
}

fn exited(c: &mut Cluster, tm: &str, attempt: u64, worker: usize, code: i32, now: i64) {
    let hb = Heartbeat {
        workers: vec![WorkerStatus {
            attempt,
            worker,
            state: WorkerState::Exited {
                code: Some(code),
                stderr: "boom at line 3".into(),
            },
        }],
        wait_ms: 0,
    };
    assert!(c.heartbeat(tm, &hb, now));
}

fn run_all(c: &mut Cluster, attempt: u64, workers: usize, now: i64) {
    let events = (0..workers)
        .map(|worker| WorkerEvent::Running { worker, graph: None })
        .collect();
    c.events(attempt, events, now).unwrap();
}

fn fixed(attempts: u32) -> RestartStrategy {
    RestartStrategy::FixedDelay {
        attempts,
        delay_ms: 100,
    }
}

#[test]
fn waits_for_slots_then_deploys_spread() {
    let mut c = cluster();
    let job = submit(&mut c, 2, fixed(1));
    assert_eq!(c.job(&job).unwrap().state, JobState::Scheduled);
    register(&mut c, "tm-a", 2, T0);
    register(&mut c, "tm-b", 2, T0);
    let a = deploys(&mut c, "tm-a");
    let b = deploys(&mut c, "tm-b");
    // Registering tm-a alone gave two slots: the job went there.
    assert_eq!(a.len(), 1);
    assert!(b.is_empty());
    assert_eq!(a[0].placement, vec![0, 0]);
    assert_eq!(a[0].checkpoint_dir, "/data/checkpoints/j-000000000001");
    assert_eq!(a[0].checkpoint_interval_ms, Some(50));
    assert_eq!(c.job(&job).unwrap().state, JobState::Deploying);
    run_all(&mut c, a[0].attempt, 1, T0);
    assert_eq!(c.job(&job).unwrap().state, JobState::Running);
    assert_eq!(c.task_managers()[0].slots_used, 2);
}

#[test]
fn parallelism_is_checked() {
    let mut c = cluster();
    for p in [0, 1025] {
        let r = c.submit(
            "j-1".into(),
            SubmitRequest {
                artifact: "x".into(),
                args: vec![],
                parallelism: p,
                name: None,
                restart: None,
                checkpoint_interval_ms: None,
                savepoint: None,
            },
            T0,
        );
        assert!(matches!(r, Err(Refusal::BadRequest(m)) if m.contains("between 1 and 1024")));
    }
}

#[test]
fn failed_worker_restarts_after_delay_then_fails_when_exhausted() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    register(&mut c, "tm-b", 1, T0);
    let job = submit(&mut c, 2, fixed(1));
    let first = deploys(&mut c, "tm-a")[0].attempt;
    assert_eq!(deploys(&mut c, "tm-b")[0].placement, vec![0, 1]);
    run_all(&mut c, first, 2, T0);

    exited(&mut c, "tm-b", first, 1, 1, T0 + 10);
    let j = c.job(&job).unwrap();
    assert_eq!(j.state, JobState::Restarting);
    assert_eq!(j.restarts, 1);
    assert!(j.exceptions[0].message.contains("worker 1"), "{:?}", j.exceptions);
    assert!(j.exceptions[0].message.contains("tm-b"));
    assert!(j.exceptions[0].message.contains("code 1"));
    assert!(j.exceptions[0].message.contains("boom at line 3"));
    // Worker 0 is killed.
    let kills = c.take_tm_commands("tm-a").unwrap();
    assert!(kills.contains(&TmCommand::Kill {
        attempt: first,
        worker: 0
    }));
    assert!(c.take_tm_commands("tm-b").unwrap().contains(&TmCommand::Forget {
        attempt: first,
        worker: 1
    }));
    // Not before the delay.
    c.tick(T0 + 50);
    assert_eq!(c.job(&job).unwrap().state, JobState::Restarting);
    c.tick(T0 + 111);
    assert_eq!(c.job(&job).unwrap().state, JobState::Deploying);
    let second = deploys(&mut c, "tm-a")[0].attempt;
    assert!(second > first);
    assert_eq!(deploys(&mut c, "tm-b")[0].restore_from, None);

    c.events(
        second,
        vec![WorkerEvent::Failed {
            worker: 0,
            error: "division by zero".into(),
        }],
        T0 + 200,
    )
    .unwrap();
    let j = c.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    let reason = j.history.last().unwrap().reason.clone().unwrap();
    assert!(
        reason.contains("exhausted") && reason.contains("division by zero"),
        "{reason}"
    );
}

#[test]
fn lost_task_manager_moves_the_job() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    register(&mut c, "tm-b", 1, T0);
    let job = submit(&mut c, 1, fixed(3));
    let first = deploys(&mut c, "tm-a")[0].attempt;
    run_all(&mut c, first, 1, T0);
    // tm-b keeps beating, tm-a falls silent.
    assert!(c.heartbeat(
        "tm-b",
        &Heartbeat {
            workers: vec![],
            wait_ms: 0
        },
        T0 + 900
    ));
    // Silent for exactly the timeout is not lost yet; a millisecond more is.
    c.tick(T0 + 1000);
    let j = c.job(&job).unwrap();
    assert_eq!((j.state, j.exceptions.len()), (JobState::Running, 0));
    c.tick(T0 + 1001);
    let j = c.job(&job).unwrap();
    assert_eq!(j.state, JobState::Restarting);
    assert!(j.exceptions[0].message.contains("tm-a"));
    assert!(c.take_tm_commands("tm-a").is_none());
    assert!(!c.heartbeat(
        "tm-a",
        &Heartbeat {
            workers: vec![],
            wait_ms: 0
        },
        T0 + 1002
    ));
    c.tick(T0 + 1101);
    let spec = &deploys(&mut c, "tm-b")[0];
    assert!(spec.attempt > first);
}

#[test]
fn stop_with_savepoint_then_resume() {
    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 1, fixed(3));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    assert!(matches!(
        c.savepoint(&job, None, true, T0),
        Err(Refusal::Conflict(m)) if m.contains("deploying")
    ));
    run_all(&mut c, attempt, 1, T0);
    let request = c.savepoint(&job, None, true, T0).unwrap();
    assert_eq!(c.job(&job).unwrap().state, JobState::Stopping);
    let commands = c.take_worker_commands(attempt).unwrap();
    let dir = match &commands[..] {
        [WorkerCommand::Savepoint {
            request: r,
            dir,
            stop: true,
        }] if *r == request => dir.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(dir, "/data/savepoints/j-000000000001/sp-1");
    c.events(
        attempt,
        vec![WorkerEvent::SavepointCompleted {
            request,
            dir: dir.clone(),
            checkpoint: 4,
        }],
        T0,
    )
    .unwrap();
    assert!(
        c.savepoint_result(request).is_none(),
        "answered before the workers exited"
    );
    exited(&mut c, "tm-a", attempt, 0, 0, T0 + 5);
    let info = c.savepoint_result(request).unwrap().unwrap();
    assert_eq!((info.dir.as_str(), info.checkpoint), (dir.as_str(), 4));
    let j = c.job(&job).unwrap();
    assert_eq!(j.state, JobState::Stopped);
    assert_eq!(j.savepoint.as_deref(), Some(dir.as_str()));

    c.resume(&job, None, Some(2), T0 + 10).unwrap();
    let spec = &deploys(&mut c, "tm-a")[0];
    assert_eq!(spec.parallelism, 2);
    assert_eq!(spec.restore_from.as_deref(), Some(dir.as_str()));
    // A failure before any checkpoint restores from the savepoint again...
    exited(&mut c, "tm-a", spec.attempt, 0, 3, T0 + 20);
    c.tick(T0 + 200);
    let again = deploys(&mut c, "tm-a")[0].clone();
    assert_eq!(again.restore_from.as_deref(), Some(dir.as_str()));
    // ...and after a checkpoint, from the newest checkpoint.
    c.events(
        again.attempt,
        vec![WorkerEvent::CheckpointCompleted {
            id: 9,
            bytes: 10,
            duration_ms: 3,
            is_savepoint: false,
        }],
        T0 + 300,
    )
    .unwrap();
    exited(&mut c, "tm-a", again.attempt, 0, 3, T0 + 310);
    c.tick(T0 + 500);
    assert_eq!(deploys(&mut c, "tm-a")[0].restore_from, None);
    assert_eq!(c.job(&job).unwrap().last_checkpoint, Some(9));
}

#[test]
fn finished_workers_finish_the_job_and_early_exit_fails_it() {
    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 1, RestartStrategy::None);
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    run_all(&mut c, attempt, 1, T0);
    c.events(attempt, vec![WorkerEvent::Finished { worker: 0 }], T0)
        .unwrap();
    exited(&mut c, "tm-a", attempt, 0, 0, T0 + 1);
    assert_eq!(c.job(&job).unwrap().state, JobState::Finished);
    assert_eq!(c.task_managers()[0].slots_used, 0);

    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 1, RestartStrategy::None);
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    exited(&mut c, "tm-a", attempt, 0, 0, T0 + 1);
    let j = c.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(j
        .history
        .last()
        .unwrap()
        .reason
        .as_ref()
        .unwrap()
        .contains("allows no restarts"));
}

#[test]
fn cancel_kills_and_restore_reschedules() {
    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 2, fixed(3));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    c.cancel(&job, T0).unwrap();
    assert_eq!(
        c.take_tm_commands("tm-a").unwrap(),
        vec![TmCommand::Kill { attempt, worker: 0 }]
    );
    assert!(c.peers(attempt).unwrap().cancelled);
    assert!(matches!(c.cancel(&job, T0), Err(Refusal::Conflict(m)) if m.contains("cancelled")));

    // A job manager restart: a running job is scheduled again with a new attempt id.
    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 1, fixed(3));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    run_all(&mut c, attempt, 1, T0);
    let records = c.take_dirty_jobs();
    let state = c.take_dirty_state().unwrap();
    let mut c = Cluster::restore(config(), state, records, T0 + 10);
    assert_eq!(c.job(&job).unwrap().state, JobState::Scheduled);
    register(&mut c, "tm-new", 2, T0 + 20);
    // The old task manager reports its worker: unknown to the new job manager.
    let old = Heartbeat {
        workers: vec![WorkerStatus {
            attempt,
            worker: 0,
            state: WorkerState::Running,
        }],
        wait_ms: 0,
    };
    assert!(c.heartbeat("tm-new", &old, T0 + 30));
    let commands = c.take_tm_commands("tm-new").unwrap();
    assert!(commands.contains(&TmCommand::Kill { attempt, worker: 0 }));
    let new_attempt = commands
        .iter()
        .find_map(|cmd| match cmd {
            TmCommand::Deploy { spec } => Some(spec.attempt),
            _ => None,
        })
        .unwrap();
    assert!(new_attempt > attempt);
}

#[test]
fn peers_answer_once_all_said_hello() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    register(&mut c, "tm-b", 1, T0);
    submit(&mut c, 2, fixed(1));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    c.hello(attempt, 0, "127.0.0.1:1".into()).unwrap();
    assert_eq!(c.peers(attempt), None);
    assert!(matches!(c.hello(attempt, 2, "x:1".into()), Err(Refusal::NotFound(_))));
    c.hello(attempt, 1, "127.0.0.1:2".into()).unwrap();
    assert_eq!(
        c.peers(attempt).unwrap().addrs.unwrap(),
        vec!["127.0.0.1:1", "127.0.0.1:2"]
    );
}

#[test]
fn failure_while_stopping_answers_the_stop_with_an_error() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    let job = submit(&mut c, 1, fixed(3));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    run_all(&mut c, attempt, 1, T0);
    let request = c.savepoint(&job, None, true, T0).unwrap();
    exited(&mut c, "tm-a", attempt, 0, 9, T0 + 1);
    let failure = c.savepoint_result(request).unwrap().unwrap_err();
    assert!(!failure.timed_out);
    assert!(failure.message.contains("code 9"), "{failure:?}");
    assert_eq!(c.job(&job).unwrap().state, JobState::Restarting);
}

#[test]
fn savepoint_deadline_and_stop_grace() {
    let mut c = cluster();
    register(&mut c, "tm-a", 2, T0);
    let job = submit(&mut c, 2, fixed(3));
    let attempt = deploys(&mut c, "tm-a")[0].attempt;
    run_all(&mut c, attempt, 1, T0);
    // No savepoint within the deadline: the stop is abandoned, the job keeps running.
    let request = c.savepoint(&job, None, true, T0).unwrap();
    beat(&mut c, "tm-a", T0 + 4500);
    c.tick(T0 + 5001);
    let failure = c.savepoint_result(request).unwrap().unwrap_err();
    assert!(failure.timed_out);
    assert_eq!(c.job(&job).unwrap().state, JobState::Running);
    // A stop whose savepoint is written but whose worker lingers: killed after the grace.
    let request = c.savepoint(&job, None, true, T0 + 6000).unwrap();
    c.take_worker_commands(attempt).unwrap();
    c.events(
        attempt,
        vec![WorkerEvent::SavepointCompleted {
            request,
            dir: "/sp".into(),
            checkpoint: 2,
        }],
        T0 + 6001,
    )
    .unwrap();
    c.take_tm_commands("tm-a").unwrap();
    beat(&mut c, "tm-a", T0 + 6500);
    c.take_tm_commands("tm-a").unwrap();
    c.tick(T0 + 7000);
    assert_eq!(c.job(&job).unwrap().state, JobState::Stopping);
    beat(&mut c, "tm-a", T0 + 7500);
    c.take_tm_commands("tm-a").unwrap();
    c.tick(T0 + 8002);
    assert_eq!(c.job(&job).unwrap().state, JobState::Stopped);
    assert_eq!(
        c.take_tm_commands("tm-a").unwrap(),
        vec![TmCommand::Kill { attempt, worker: 0 }]
    );
    assert_eq!(c.savepoint_result(request).unwrap().unwrap().dir, "/sp");
}

fn beat(c: &mut Cluster, tm: &str, now: i64) {
    let running = Heartbeat {
        workers: vec![],
        wait_ms: 0,
    };
    assert!(c.heartbeat(tm, &running, now));
}

#[test]
fn a_deployment_that_never_runs_fails_and_restarts() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    register(&mut c, "tm-b", 1, T0);
    let job = submit(&mut c, 2, fixed(1));
    let first = deploys(&mut c, "tm-a")[0].attempt;
    assert_eq!(deploys(&mut c, "tm-b").len(), 1);
    // Worker 0 runs; worker 1's deployment is lost. Task managers keep heartbeating.
    c.events(first, vec![WorkerEvent::Running { worker: 0, graph: None }], T0 + 10)
        .unwrap();
    let alive = |c: &mut Cluster, now| {
        for tm in ["tm-a", "tm-b"] {
            c.heartbeat(
                tm,
                &Heartbeat {
                    workers: vec![],
                    wait_ms: 0,
                },
                now,
            );
        }
    };
    alive(&mut c, T0 + 9_000);
    c.tick(T0 + 9_999);
    assert_eq!(c.job(&job).unwrap().state, JobState::Deploying);
    alive(&mut c, T0 + 10_000);
    assert!(c.tick(T0 + 10_000));
    let record = c.job(&job).unwrap();
    assert_eq!(record.state, JobState::Restarting);
    let why = record.history.last().unwrap().reason.clone().unwrap();
    assert!(why.contains("worker 1 on tm-b"), "{why}");
    assert!(why.contains("--deploy-timeout-ms"), "{why}");
    // The restart deploys a new attempt, which may run.
    c.tick(T0 + 10_200);
    let second: Vec<u64> = ["tm-a", "tm-b"]
        .iter()
        .flat_map(|tm| deploys(&mut c, tm))
        .map(|s| s.attempt)
        .collect();
    assert_eq!(second.len(), 2);
    assert!(second.iter().all(|a| *a > first));
    run_all(&mut c, second[0], 2, T0 + 10_300);
    assert_eq!(c.job(&job).unwrap().state, JobState::Running);
}

#[test]
fn the_workers_of_an_attempt_share_a_secret_of_their_own() {
    let mut c = cluster();
    register(&mut c, "tm-a", 1, T0);
    register(&mut c, "tm-b", 1, T0);
    let job = submit(&mut c, 2, fixed(1));
    let (a, b) = (deploys(&mut c, "tm-a").remove(0), deploys(&mut c, "tm-b").remove(0));
    assert_eq!(
        a.secret, b.secret,
        "both workers of attempt {} prove one secret",
        a.attempt
    );
    assert_ne!(a.secret, config().attempt_key, "not the job manager's key itself");
    assert!(!format!("{a:?}").contains(&a.secret.to_hex()), "Debug never shows it");
    run_all(&mut c, a.attempt, 2, T0);
    exited(&mut c, "tm-b", a.attempt, 1, 1, T0 + 10);
    c.tick(T0 + 111);
    assert_eq!(c.job(&job).unwrap().state, JobState::Deploying);
    let next = deploys(&mut c, "tm-a").remove(0);
    assert!(next.attempt > a.attempt);
    assert_ne!(next.secret, a.secret, "a new attempt gets a new secret");
    assert_eq!(next.secret, deploys(&mut c, "tm-b").remove(0).secret);
}
