//! The job manager's REST surface over real HTTP: the token, error answers, uploads (limit,
//! names), the token file, and records surviving a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use floe_cluster::jobmanager::{JobManager, JobManagerConfig, RunningJobManager};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Sends a request; `token` `None` sends no Authorization header.
fn call(jm: &RunningJobManager, token: Option<&str>, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let mut req = ureq::request(method, &format!("{}{path}", jm.url())).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
        None => req.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// Sends with the right token and parses the JSON answer.
fn api(jm: &RunningJobManager, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let (status, text) = call(jm, Some(jm.token()), method, path, bytes.as_deref());
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path} answered {status} with non-JSON {text:?}: {e}"));
    (status, value)
}

fn error_of(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"))
        .to_string()
}

fn upload(jm: &RunningJobManager, bytes: &[u8], name: Option<&str>) -> (u16, Value) {
    let mut req =
        ureq::post(&format!("{}/api/v1/artifacts", jm.url())).set("Authorization", &format!("Bearer {}", jm.token()));
    if let Some(n) = name {
        req = req.set("x-floe-name", n);
    }
    match req.send_bytes(bytes) {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
        Err(e) => panic!("upload: {e}"),
    }
}

fn start(dir: &Path) -> RunningJobManager {
    JobManager::start(JobManagerConfig::new(dir)).unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn token_is_required_except_for_health_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start(dir.path());
    let (status, body) = call(&jm, None, "GET", "/api/v1/jobs", None);
    assert_eq!(status, 401);
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error_of(&err), "missing bearer token: pass --token or set FLOE_TOKEN");
    let (status, body) = call(&jm, Some("not-the-token"), "GET", "/api/v1/jobs", None);
    assert_eq!(status, 401);
    assert!(
        error_of(&serde_json::from_str(&body).unwrap()).starts_with("wrong token"),
        "{body}"
    );
    let (status, _) = call(&jm, None, "GET", "/metrics", None);
    assert_eq!(status, 401);
    let (status, _) = call(&jm, None, "POST", "/api/v1/taskmanagers", Some(b"{}"));
    assert_eq!(status, 401);

    let (status, body) = call(&jm, None, "GET", "/api/v1/health", None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "ok");
    let (status, body) = call(&jm, None, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(body.to_lowercase().contains("<!doctype html>"));

    let (status, jobs) = api(&jm, "GET", "/api/v1/jobs", None);
    assert_eq!((status, jobs), (200, json!([])));

    let mode = std::fs::metadata(jm.data_dir().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let on_disk = std::fs::read_to_string(jm.data_dir().join("token")).unwrap();
    assert_eq!(on_disk.trim(), jm.token());
}

#[test]
fn bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start(dir.path());
    let (status, artifact) = upload(&jm, b"binary", None);
    assert_eq!(status, 200);
    let sha = artifact["sha256"].as_str().unwrap().to_string();

    let (status, text) = call(&jm, Some(jm.token()), "POST", "/api/v1/jobs", Some(b"{\"artifact\": "));
    assert_eq!(status, 400, "{text}");
    let msg = error_of(&serde_json::from_str(&text).unwrap());
    assert!(msg.contains("invalid JSON body") && msg.contains("EOF"), "{msg}");

    let (status, err) = api(
        &jm,
        "POST",
        "/api/v1/jobs",
        Some(json!({"artifact": sha, "parallelism": 1, "args": [1, 2]})),
    );
    assert_eq!(status, 400);
    assert!(
        error_of(&err).contains("invalid type: integer `1`, expected a string"),
        "{err}"
    );

    let (status, err) = api(&jm, "POST", "/api/v1/jobs", Some(json!({"parallelism": 1})));
    assert_eq!(status, 400);
    assert!(error_of(&err).contains("missing field `artifact`"), "{err}");

    for p in [0, 100_000] {
        let (status, err) = api(
            &jm,
            "POST",
            "/api/v1/jobs",
            Some(json!({"artifact": sha, "parallelism": p})),
        );
        assert_eq!(status, 400, "{err}");
        assert!(
            error_of(&err).contains(&format!("parallelism {p} is out of range")),
            "{err}"
        );
    }

    let unknown = "0".repeat(64);
    let (status, err) = api(
        &jm,
        "POST",
        "/api/v1/jobs",
        Some(json!({"artifact": unknown, "parallelism": 1})),
    );
    assert_eq!(status, 404);
    assert_eq!(error_of(&err), format!("unknown artifact {unknown}: upload it first"));

    let (status, err) = api(&jm, "GET", "/api/v1/jobs/j-123456789abc", None);
    assert_eq!(status, 404);
    assert_eq!(error_of(&err), "unknown job j-123456789abc");
    let (status, err) = api(&jm, "POST", "/api/v1/jobs/j-nope/cancel", None);
    assert_eq!((status, error_of(&err)), (404, "unknown job j-nope".to_string()));

    let (status, err) = api(&jm, "GET", "/api/v1/nothing/here", None);
    assert_eq!(status, 404);
    assert!(error_of(&err).contains("/api/v1/nothing/here"), "{err}");
    let (status, err) = api(&jm, "DELETE", "/api/v1/jobs", None);
    assert_eq!(status, 405);
    assert!(error_of(&err).contains("DELETE"), "{err}");
    let (status, err) = api(&jm, "GET", "/api/v1/attempts/not-a-number/peers", None);
    assert_eq!(status, 400, "{err}");

    let (status, err) = api(
        &jm,
        "POST",
        "/api/v1/taskmanagers",
        Some(json!({"slots": 0, "host": "h", "pid": 1})),
    );
    assert_eq!(status, 400);
    assert!(error_of(&err).contains("slots 0 is out of range"), "{err}");
    let (status, hb) = api(
        &jm,
        "POST",
        "/api/v1/taskmanagers/tm-gone/heartbeat",
        Some(json!({"workers": []})),
    );
    assert_eq!((status, hb["unknown"].clone()), (200, json!(true)));

    // A job that can run is accepted, and waits for slots.
    let (status, job) = api(
        &jm,
        "POST",
        "/api/v1/jobs",
        Some(json!({"artifact": sha, "parallelism": 1024})),
    );
    assert_eq!(status, 200, "{job}");
    assert!(job["id"].as_str().unwrap().starts_with("j-"));
    assert_eq!(job["id"].as_str().unwrap().len(), 14);
    assert_eq!(job["state"], json!("scheduled"));
    let (status, err) = api(
        &jm,
        "POST",
        &format!("/api/v1/jobs/{}/rescale", job["id"].as_str().unwrap()),
        Some(json!({"parallelism": 2})),
    );
    assert_eq!(status, 409);
    assert!(
        error_of(&err).contains("is scheduled: only a running job can be rescaled"),
        "{err}"
    );
}

#[test]
fn oversized_upload_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = JobManagerConfig::new(dir.path());
    config.max_upload_bytes = 1 << 20;
    let jm = JobManager::start(config).unwrap();
    let big = vec![7u8; 2 << 20];
    let (status, err) = upload(&jm, &big, Some("big"));
    assert_eq!(status, 413, "{err}");
    assert!(error_of(&err).contains("--max-upload-mb"), "{err}");
    assert!(listing(&jm.data_dir().join("artifacts")).is_empty());
    // Just under the limit is fine.
    let (status, _) = upload(&jm, &big[..(1 << 20)], None);
    assert_eq!(status, 200);
}

#[test]
fn artifacts_are_stored_only_by_their_hash() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let jm = start(&data);
    let mut shas = Vec::new();
    for (content, name, shown) in [
        (&b"first binary"[..], "../../../etc/passwd", "passwd"),
        (&b"second binary"[..], "a/b", "b"),
    ] {
        let (status, info) = upload(&jm, content, Some(name));
        assert_eq!(status, 200, "{info}");
        let sha = hex::encode(Sha256::digest(content));
        assert_eq!(info["sha256"], json!(sha));
        assert_eq!(info["size"], json!(content.len()));
        assert_eq!(info["name"], json!(shown));
        let stored = std::fs::read(jm.data_dir().join("artifacts").join(&sha)).unwrap();
        assert_eq!(stored, content);
        shas.push(sha);
    }
    shas.sort();
    assert_eq!(listing(&jm.data_dir().join("artifacts")), shas);
    assert_eq!(listing(root.path()), vec!["data"]);
    assert_eq!(listing(&data), vec!["artifacts", "jobs", "state.json", "token"]);

    // Download gives the bytes back; a malformed hash is refused.
    let r = ureq::get(&format!("{}/api/v1/artifacts/{}", jm.url(), shas[0]))
        .set("Authorization", &format!("Bearer {}", jm.token()))
        .call()
        .unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&got)), shas[0]);
    let (status, _) = api(&jm, "GET", "/api/v1/artifacts/..%2F..%2Ftoken", None);
    assert_eq!(status, 400);
}

#[test]
fn jobs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let jm = start(dir.path());
    let token = jm.token().to_string();
    let (_, info) = upload(&jm, b"job binary", Some("wordcount"));
    let sha = info["sha256"].as_str().unwrap().to_string();
    let (_, waiting) = api(
        &jm,
        "POST",
        "/api/v1/jobs",
        Some(json!({"artifact": sha, "parallelism": 2, "args": ["--input", "x"]})),
    );
    let (_, cancelled) = api(
        &jm,
        "POST",
        "/api/v1/jobs",
        Some(json!({"artifact": sha, "parallelism": 1, "name": "other"})),
    );
    let cancelled_id = cancelled["id"].as_str().unwrap().to_string();
    let (status, _) = api(&jm, "POST", &format!("/api/v1/jobs/{cancelled_id}/cancel"), None);
    assert_eq!(status, 200);
    let (_, before) = api(&jm, "GET", &format!("/api/v1/jobs/{cancelled_id}"), None);
    jm.shutdown();

    let jm = start(dir.path());
    assert_eq!(jm.token(), token);
    let (_, jobs) = api(&jm, "GET", "/api/v1/jobs", None);
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(jobs[0]["name"], json!("wordcount"));
    let (_, after) = api(&jm, "GET", &format!("/api/v1/jobs/{cancelled_id}"), None);
    assert_eq!(after, before);
    let states: Vec<&str> = after["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["scheduled", "cancelled"]);
    let (_, detail) = api(
        &jm,
        "GET",
        &format!("/api/v1/jobs/{}", waiting["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(detail["args"], json!(["--input", "x"]));
    assert_eq!(detail["state"], json!("scheduled"));
    let (_, metrics) = {
        let (s, t) = call(&jm, Some(jm.token()), "GET", "/metrics", None);
        (s, t)
    };
    assert!(metrics.contains("floe_jobs{state=\"cancelled\"} 1"), "{metrics}");
    assert!(metrics.contains("floe_jobs{state=\"scheduled\"} 1"), "{metrics}");
}
