//! Arbitrary bodies into every POST endpoint of a real job manager on 127.0.0.1: random
//! bytes, random JSON, and JSON shaped like the real requests with values of any type and
//! size. Every answer is a 2xx or a 4xx with a JSON error (never a 5xx, never a dropped
//! connection, which is what a panicking handler gives), and the job manager still answers
//! afterwards.

use std::time::Duration;

use floe_cluster::jobmanager::{JobManager, JobManagerConfig, RunningJobManager};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

/// Field names and tag values of the protocol's requests, so that random JSON reaches past
/// "missing field" into the handlers.
const WORDS: &[&str] = &[
    "artifact",
    "args",
    "parallelism",
    "name",
    "restart",
    "checkpoint_interval_ms",
    "savepoint",
    "dir",
    "slots",
    "host",
    "pid",
    "workers",
    "wait_ms",
    "attempt",
    "worker",
    "state",
    "code",
    "stderr",
    "addr",
    "event",
    "graph",
    "id",
    "bytes",
    "duration_ms",
    "is_savepoint",
    "reason",
    "request",
    "checkpoint",
    "prometheus",
    "operators",
    "error",
    "type",
    "attempts",
    "delay_ms",
    "initial_ms",
    "max_ms",
    "multiplier",
    "running",
    "exited",
    "none",
    "fixed-delay",
    "exponential-backoff",
    "checkpoint-completed",
    "checkpoint-failed",
    "savepoint-completed",
    "metrics",
    "finished",
    "failed",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![0u64, 1, 2, u64::from(u32::MAX), 1 << 53, u64::MAX]).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..8).prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A body: random bytes, random JSON, or JSON cut short or with a byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        3 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = v.to_string().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = b;
            bytes
        }),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let bytes = v.to_string().into_bytes();
            let cut = at.index(bytes.len());
            bytes[..cut].to_vec()
        }),
    ]
}

/// Sends `body` to `path`; returns the status and the body, panicking if the connection
/// failed (a handler that panics drops it).
fn post(jm: &RunningJobManager, path: &str, body: &[u8]) -> (u16, String) {
    let result = ureq::post(&format!("{}{path}", jm.url()))
        .timeout(Duration::from_secs(30))
        .set("Authorization", &format!("Bearer {}", jm.token()))
        .set("Content-Type", "application/json")
        .send_bytes(body);
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!(
            "POST {path} with {:?}: no answer ({e}): did the handler panic?",
            String::from_utf8_lossy(body)
        ),
    }
}

fn get(jm: &RunningJobManager, path: &str) -> (u16, Value) {
    let r = ureq::get(&format!("{}{path}", jm.url()))
        .set("Authorization", &format!("Bearer {}", jm.token()))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status(), r.into_json().unwrap())
}

/// Checks one answer: a success, or a client error saying what was wrong as JSON.
fn check(path: &str, body: &[u8], status: u16, answer: &str) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(body);
    prop_assert!(
        (200..300).contains(&status) || (400..500).contains(&status),
        "POST {} with {:?}: status {} ({})",
        path,
        shown,
        status,
        answer
    );
    if status >= 400 {
        let v: Value = serde_json::from_str(answer)
            .map_err(|e| TestCaseError::fail(format!("POST {path}: {status} with non-JSON {answer:?}: {e}")))?;
        prop_assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "POST {}: {} without an error message: {}",
            path,
            status,
            answer
        );
    }
    Ok(())
}

#[test]
fn arbitrary_bodies_get_an_answer_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let jm = JobManager::start(JobManagerConfig::new(dir.path())).unwrap();

    // Something for the handlers to find: an artifact, a job waiting for slots, a task
    // manager.
    let (status, artifact) = post(&jm, "/api/v1/artifacts", b"not really a binary");
    assert_eq!(status, 200, "{artifact}");
    let sha = serde_json::from_str::<Value>(&artifact).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let submit = json!({"artifact": sha, "parallelism": 1}).to_string();
    let (status, job) = post(&jm, "/api/v1/jobs", submit.as_bytes());
    assert_eq!(status, 200, "{job}");
    let job = serde_json::from_str::<Value>(&job).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let register = json!({"slots": 1, "host": "fuzz", "pid": 1}).to_string();
    let (status, tm) = post(&jm, "/api/v1/taskmanagers", register.as_bytes());
    assert_eq!(status, 200, "{tm}");
    let tm = serde_json::from_str::<Value>(&tm).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let paths: Vec<String> = vec![
        "/api/v1/artifacts".into(),
        "/api/v1/jobs".into(),
        format!("/api/v1/jobs/{job}/cancel"),
        format!("/api/v1/jobs/{job}/savepoint"),
        format!("/api/v1/jobs/{job}/stop"),
        format!("/api/v1/jobs/{job}/resume"),
        format!("/api/v1/jobs/{job}/rescale"),
        "/api/v1/jobs/no-such-job/rescale".into(),
        "/api/v1/taskmanagers".into(),
        format!("/api/v1/taskmanagers/{tm}/heartbeat"),
        "/api/v1/taskmanagers/tm-unknown/heartbeat".into(),
        "/api/v1/attempts/1/workers/0".into(),
        "/api/v1/attempts/18446744073709551615/workers/18446744073709551615".into(),
        "/api/v1/attempts/18446744073709551616/workers/0".into(),
        "/api/v1/attempts/1/events".into(),
        "/api/v1/attempts/0/events".into(),
    ];
    for path in &paths {
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&body(), |bytes| {
                let (status, answer) = post(&jm, path, &bytes);
                check(path, &bytes, status, &answer)
            })
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    let (status, health) = get(&jm, "/api/v1/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, jobs) = get(&jm, "/api/v1/jobs");
    assert_eq!(status, 200);
    assert!(
        jobs.as_array()
            .is_some_and(|j| j.iter().any(|j| j["id"] == job.as_str())),
        "the job submitted before the fuzzing is still listed: {jobs}"
    );
}

#[test]
fn the_checker_rejects_server_errors_and_errors_without_a_message() {
    assert!(check("/p", b"", 200, "{}").is_ok());
    assert!(check("/p", b"", 400, r#"{"error":"bad"}"#).is_ok());
    assert!(check("/p", b"", 500, r#"{"error":"boom"}"#).is_err());
    assert!(check("/p", b"", 400, "not json").is_err());
    assert!(check("/p", b"", 404, r#"{"error":""}"#).is_err());
    assert!(check("/p", b"", 422, &Value::Object(Map::new()).to_string()).is_err());
}
