//! The blocking HTTP client of the job manager's API: what the `floe` CLI, task managers,
//! workers and job binaries' `submit` use. One typed method per endpoint of [`protocol`].
//!
//! `http://` or `https://` (the system's OpenSSL; a job manager whose certificate the
//! system does not trust is trusted with `--ca-cert` / `FLOE_CA_CERT`). Errors: an error
//! status becomes
//! [`ClusterError::Api`] with the job manager's message, a failed connection
//! [`ClusterError::Unreachable`] naming the URL.
//!
//! [`protocol`]: crate::protocol

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ClusterError, Result};
use crate::protocol::{
    ApiError, ArtifactInfo, Health, Heartbeat, HeartbeatResponse, JobDetail, JobSummary, Peers, RegisterRequest,
    RegisterResponse, RescaleRequest, ResumeRequest, SavepointInfo, SavepointRequest, SubmitRequest, TaskManagerInfo,
    WorkerCommand, WorkerEvent, WorkerHello, CA_CERT_ENV, NAME_HEADER,
};

/// The job manager's URL when none is given.
pub const DEFAULT_JOB_MANAGER: &str = "http://127.0.0.1:8081";

/// Time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request limit of ordinary calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time given to a long poll beyond what the server may hold it.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(30);
/// Whole-request limit of calls that wait for a savepoint to be written.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);
/// Per read or write limit of artifact transfers (they have no whole-request limit).
const TRANSFER_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of an error body that is kept in a message.
const MAX_ERROR_BODY: usize = 4096;

/// A client of one job manager.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the job manager at `base_url` (`http://host:port`; a bare `host:port`
    /// is taken as `http://`), sending `token` as the bearer token when given.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Result<Client> {
        Client::with_ca_cert(base_url, token, None)
    }

    /// Like [`Client::new`], trusting the certificates in the PEM file `ca_cert` as well as
    /// the system's for `https://`.
    pub fn with_ca_cert(
        base_url: impl Into<String>,
        token: Option<String>,
        ca_cert: Option<PathBuf>,
    ) -> Result<Client> {
        let base = normalize_base(&base_url.into())?;
        let mut tls = native_tls::TlsConnector::builder();
        if let Some(path) = &ca_cert {
            let pem = fs::read(path).map_err(|e| {
                ClusterError::io(format!("reading the CA certificate {} (--ca-cert)", path.display()), e)
            })?;
            let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
                ClusterError::Config(format!("--ca-cert {}: not a PEM certificate: {e}", path.display()))
            })?;
            tls.add_root_certificate(cert);
        }
        let tls = tls
            .build()
            .map_err(|e| ClusterError::Config(format!("setting up TLS: {e}")))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(TRANSFER_IO_TIMEOUT)
            .timeout_write(TRANSFER_IO_TIMEOUT)
            .redirects(0)
            .user_agent(concat!("floe/", env!("CARGO_PKG_VERSION")))
            .tls_connector(std::sync::Arc::new(tls))
            .build();
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(Client {
            base,
            token,
            ca_cert,
            agent,
        })
    }

    /// The extra CA certificate this client trusts, if any (handed on to workers).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The job manager's URL (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token sent, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `GET /api/v1/health`.
    pub fn health(&self) -> Result<Health> {
        self.get_json("/api/v1/health", REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/artifacts`: uploads a job binary held in memory.
    pub fn upload_artifact(&self, bytes: &[u8], name: Option<&str>) -> Result<ArtifactInfo> {
        let path = "/api/v1/artifacts";
        let request = self
            .upload_request(path, name)
            .set("Content-Length", &bytes.len().to_string());
        self.answer_json(path, request.send_bytes(bytes))
    }

    /// `POST /api/v1/artifacts`: uploads the job binary at `file`, streamed from disk. The
    /// display name defaults to the file's name.
    pub fn upload_artifact_file(&self, file: &Path, name: Option<&str>) -> Result<ArtifactInfo> {
        let opened = File::open(file).map_err(|e| ClusterError::io(format!("cannot open {}", file.display()), e))?;
        let meta = opened
            .metadata()
            .map_err(|e| ClusterError::io(format!("cannot read {}", file.display()), e))?;
        if !meta.is_file() {
            return Err(ClusterError::Config(format!(
                "{} is not a file: give the path of a job binary",
                file.display()
            )));
        }
        let default_name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.map(str::to_owned).or(default_name);
        let path = "/api/v1/artifacts";
        let request = self
            .upload_request(path, name.as_deref())
            .set("Content-Length", &meta.len().to_string());
        self.answer_json(path, request.send(io::BufReader::new(opened)))
    }

    /// `POST /api/v1/jobs`.
    pub fn submit(&self, request: &SubmitRequest) -> Result<JobSummary> {
        self.post_json("/api/v1/jobs", request, REQUEST_TIMEOUT)
    }

    /// `GET /api/v1/jobs`.
    pub fn jobs(&self) -> Result<Vec<JobSummary>> {
        self.get_json("/api/v1/jobs", REQUEST_TIMEOUT)
    }

    /// `GET /api/v1/jobs/{id}`.
    pub fn job(&self, id: &str) -> Result<JobDetail> {
        self.get_json(&format!("/api/v1/jobs/{}", segment(id)), REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/jobs/{id}/cancel`.
    pub fn cancel(&self, id: &str) -> Result<JobSummary> {
        let path = format!("/api/v1/jobs/{}/cancel", segment(id));
        self.post_json(&path, &serde_json::json!({}), REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/jobs/{id}/savepoint`: answers once the savepoint is written.
    pub fn savepoint(&self, id: &str, request: &SavepointRequest) -> Result<SavepointInfo> {
        let path = format!("/api/v1/jobs/{}/savepoint", segment(id));
        self.post_json(&path, request, SAVEPOINT_TIMEOUT)
    }

    /// `POST /api/v1/jobs/{id}/stop`: stop with a savepoint; answers once it is written.
    pub fn stop(&self, id: &str, request: &SavepointRequest) -> Result<SavepointInfo> {
        let path = format!("/api/v1/jobs/{}/stop", segment(id));
        self.post_json(&path, request, SAVEPOINT_TIMEOUT)
    }

    /// `POST /api/v1/jobs/{id}/resume`.
    pub fn resume(&self, id: &str, request: &ResumeRequest) -> Result<JobSummary> {
        let path = format!("/api/v1/jobs/{}/resume", segment(id));
        self.post_json(&path, request, REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/jobs/{id}/rescale` (it takes a savepoint first, so it may take long).
    pub fn rescale(&self, id: &str, request: &RescaleRequest) -> Result<JobSummary> {
        let path = format!("/api/v1/jobs/{}/rescale", segment(id));
        self.post_json(&path, request, SAVEPOINT_TIMEOUT)
    }

    /// `GET /api/v1/taskmanagers`.
    pub fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>> {
        self.get_json("/api/v1/taskmanagers", REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/taskmanagers`: registers a task manager.
    pub fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse> {
        self.post_json("/api/v1/taskmanagers", request, REQUEST_TIMEOUT)
    }

    /// `POST /api/v1/taskmanagers/{tm}/heartbeat`: a long poll of up to `heartbeat.wait_ms`.
    pub fn heartbeat(&self, tm: &str, heartbeat: &Heartbeat) -> Result<HeartbeatResponse> {
        let path = format!("/api/v1/taskmanagers/{}/heartbeat", segment(tm));
        let timeout = Duration::from_millis(heartbeat.wait_ms) + LONG_POLL_MARGIN;
        self.post_json(&path, heartbeat, timeout)
    }

    /// `POST /api/v1/attempts/{attempt}/workers/{worker}`: a worker is listening.
    pub fn worker_hello(&self, attempt: u64, worker: usize, hello: &WorkerHello) -> Result<()> {
        let path = format!("/api/v1/attempts/{attempt}/workers/{worker}");
        self.post_json::<_, serde::de::IgnoredAny>(&path, hello, REQUEST_TIMEOUT)
            .map(|_| ())
    }

    /// `GET /api/v1/attempts/{attempt}/peers?wait_ms=N`: a long poll of up to `wait`.
    pub fn peers(&self, attempt: u64, wait: Duration) -> Result<Peers> {
        let path = format!("/api/v1/attempts/{attempt}/peers?wait_ms={}", wait.as_millis());
        self.get_json(&path, wait + LONG_POLL_MARGIN)
    }

    /// `POST /api/v1/attempts/{attempt}/events`.
    pub fn post_events(&self, attempt: u64, events: &[WorkerEvent]) -> Result<()> {
        let path = format!("/api/v1/attempts/{attempt}/events");
        self.post_json::<_, serde::de::IgnoredAny>(&path, &events, REQUEST_TIMEOUT)
            .map(|_| ())
    }

    /// `GET /api/v1/attempts/{attempt}/commands?wait_ms=N`: a long poll of up to `wait`.
    pub fn commands(&self, attempt: u64, wait: Duration) -> Result<Vec<WorkerCommand>> {
        let path = format!("/api/v1/attempts/{attempt}/commands?wait_ms={}", wait.as_millis());
        self.get_json(&path, wait + LONG_POLL_MARGIN)
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics_text(&self) -> Result<String> {
        let path = "/metrics";
        let response = self.answer(path, self.request("GET", path).timeout(REQUEST_TIMEOUT).call())?;
        response
            .into_string()
            .map_err(|e| self.unreachable(path, &e.to_string()))
    }

    /// `GET /api/v1/artifacts/{sha256}` into `dest`: streamed to a temporary file next to
    /// it, checked against `sha256`, made executable by its owner only (mode 0700) and
    /// renamed into place, so `dest` is either absent or complete.
    pub fn fetch_artifact(&self, sha256: &str, dest: &Path) -> Result<()> {
        check_sha256(sha256)?;
        let path = format!("/api/v1/artifacts/{sha256}");
        let response = self.answer(&path, self.request("GET", &path).call())?;
        let tmp = temp_path(dest);
        let written = write_verified(response.into_reader(), &tmp, sha256);
        let placed = written.and_then(|()| {
            fs::rename(&tmp, dest)
                .map_err(|e| ClusterError::io(format!("cannot move the artifact to {}", dest.display()), e))
        });
        if placed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        placed
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &self.url(path));
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn upload_request(&self, path: &str, name: Option<&str>) -> ureq::Request {
        let request = self
            .request("POST", path)
            .set("Content-Type", "application/octet-stream");
        match name.map(header_safe).filter(|n| !n.is_empty()) {
            Some(name) => request.set(NAME_HEADER, &name),
            None => request,
        }
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T> {
        let sent = self.request("GET", path).timeout(timeout).call();
        self.answer_json(path, sent)
    }

    fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T> {
        let body =
            serde_json::to_vec(body).map_err(|e| ClusterError::Other(format!("cannot encode the request: {e}")))?;
        let sent = self
            .request("POST", path)
            .timeout(timeout)
            .set("Content-Type", "application/json")
            .send_bytes(&body);
        self.answer_json(path, sent)
    }

    fn answer_json<T: DeserializeOwned>(
        &self,
        path: &str,
        sent: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<T> {
        let response = self.answer(path, sent)?;
        let status = response.status();
        let text = response
            .into_string()
            .map_err(|e| self.unreachable(path, &format!("reading the answer failed: {e}")))?;
        serde_json::from_str(&text).map_err(|e| {
            ClusterError::Other(format!(
                "the answer of {} (status {status}) is not what this client expects ({e}); is \
                 the job manager the same version as this client?",
                self.url(path)
            ))
        })
    }

    /// Turns an error status or a transport failure into a [`ClusterError`].
    fn answer(&self, path: &str, sent: std::result::Result<ureq::Response, ureq::Error>) -> Result<ureq::Response> {
        match sent {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let body = read_limited(response.into_reader());
                let mut message = match serde_json::from_str::<ApiError>(&body) {
                    Ok(api) => api.error,
                    Err(_) if body.trim().is_empty() => format!("HTTP status {status}"),
                    Err(_) => body.trim().to_owned(),
                };
                if status == 401 {
                    message.push_str(
                        " (pass the job manager's token with --token or --token-file, or set \
                         FLOE_TOKEN; it is in the file `token` of the job manager's data \
                         directory)",
                    );
                }
                Err(ClusterError::Api { status, message })
            }
            Err(ureq::Error::Transport(transport)) => Err(self.unreachable(path, &transport.to_string())),
        }
    }

    fn unreachable(&self, path: &str, message: &str) -> ClusterError {
        ClusterError::Unreachable {
            what: self.url(path),
            message: format!(
                "{message}; check that `floe jobmanager` runs there (set its URL with \
                 --job-manager or FLOE_JOB_MANAGER)"
            ),
        }
    }
}

/// How a command reaches the job manager: flattened into every cluster command's arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    /// The job manager's URL.
    #[arg(
        long = "job-manager",
        env = "FLOE_JOB_MANAGER",
        value_name = "URL",
        default_value = DEFAULT_JOB_MANAGER
    )]
    pub job_manager: String,
    /// The job manager's bearer token.
    #[arg(long, env = "FLOE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (the job manager writes it to `<data-dir>/token`); it
    /// wins over --token.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Trust the certificates in this PEM file (besides the system's) for an `https://` job
    /// manager: its own CA, or a self-signed certificate.
    #[arg(long, env = CA_CERT_ENV, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

impl ClusterArgs {
    /// Arguments for the job manager at `url` with `token` (for tests and embedding).
    pub fn new(url: impl Into<String>, token: Option<String>) -> ClusterArgs {
        ClusterArgs {
            job_manager: url.into(),
            token,
            token_file: None,
            ca_cert: None,
        }
    }

    /// The token: read from --token-file if given, else --token / FLOE_TOKEN.
    pub fn resolve_token(&self) -> Result<Option<String>> {
        match &self.token_file {
            Some(path) => {
                let text = fs::read_to_string(path).map_err(|e| {
                    ClusterError::io(
                        format!(
                            "cannot read the token file {} (give the file `token` in the job \
                             manager's data directory)",
                            path.display()
                        ),
                        e,
                    )
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(ClusterError::Config(format!(
                        "the token file {} is empty",
                        path.display()
                    )));
                }
                Ok(Some(token.to_owned()))
            }
            None => Ok(self.token.clone()),
        }
    }

    /// A client of the job manager these arguments name.
    pub fn client(&self) -> Result<Client> {
        Client::with_ca_cert(self.job_manager.clone(), self.resolve_token()?, self.ca_cert.clone())
    }
}

/// `http(s)://host:port` without a trailing slash; `host:port` gets `http://`.
fn normalize_base(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.is_empty() {
        return Err(ClusterError::Config(format!(
            "the job manager URL is empty: give one like {DEFAULT_JOB_MANAGER}"
        )));
    }
    let lower = url.to_ascii_lowercase();
    let full = if lower.starts_with("http://") || lower.starts_with("https://") {
        url.to_owned()
    } else if url.contains("://") {
        return Err(ClusterError::Config(format!(
            "{url}: the job manager URL must start with http:// or https:// (like {DEFAULT_JOB_MANAGER})"
        )));
    } else {
        format!("http://{url}")
    };
    let host = &full[full.find("://").map_or(0, |i| i + 3)..];
    if host.is_empty() || full.contains(char::is_whitespace) {
        return Err(ClusterError::Config(format!(
            "{url} is not a job manager URL: give one like {DEFAULT_JOB_MANAGER}"
        )));
    }
    Ok(full)
}

/// A path segment, percent-encoded (ids come from users).
fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A header value made of printable ASCII only.
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Refuses anything but 64 hex digits (it becomes a file name).
pub fn check_sha256(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ClusterError::Config(format!(
            "{sha256:?} is not an artifact id: expected 64 hex digits (a sha256)"
        )))
    }
}

fn read_limited(reader: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = reader.take(MAX_ERROR_BODY as u64).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".to_owned());
    // Unique per call: two deploys of one artifact may fetch it at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dest.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()))
}

/// Copies `reader` into `tmp` (mode 0700), checking its sha256 at the end.
fn write_verified(mut reader: impl Read, tmp: &Path, sha256: &str) -> Result<()> {
    let context = || format!("cannot write the artifact to {}", tmp.display());
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o700);
    }
    let mut file = options.open(tmp).map_err(|e| ClusterError::io(context(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ClusterError::Unreachable {
                    what: format!("artifact {sha256}"),
                    message: format!("the download broke off: {e}"),
                })
            }
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| ClusterError::io(context(), e))?;
    }
    file.sync_all().map_err(|e| ClusterError::io(context(), e))?;
    drop(file);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o700)).map_err(|e| ClusterError::io(context(), e))?;
    }
    let got = hex::encode(hasher.finalize());
    if !got.eq_ignore_ascii_case(sha256) {
        return Err(ClusterError::Other(format!(
            "the artifact downloaded as {sha256} has sha256 {got}: the job manager's store is \
             damaged or the download was altered"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobmanager::{JobManager, JobManagerConfig};
    use std::net::TcpListener;

    /// A one-shot HTTP server answering the first request with `status` and `body`.
    fn canned(status: &'static str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).unwrap();
        });
        url
    }

    #[test]
    fn artifacts_round_trip_and_land_executable() {
        let dir = tempfile::tempdir().unwrap();
        let jm = JobManager::start(JobManagerConfig::new(dir.path().join("jm"))).unwrap();
        let client = Client::new(jm.url(), Some(jm.token().to_owned())).unwrap();
        let binary = dir.path().join("my-job");
        fs::write(&binary, b"#!/bin/sh\nexit 0\n").unwrap();
        let info = client.upload_artifact_file(&binary, None).unwrap();
        assert_eq!(info.size, 17);
        assert_eq!(info.name.as_deref(), Some("my-job"));
        let dest = dir.path().join("fetched");
        client.fetch_artifact(&info.sha256, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), fs::read(&binary).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dest).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let absent = "0".repeat(64);
        let err = client.fetch_artifact(&absent, &dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, ClusterError::Api { status: 404, .. }), "{err}");
        assert!(!dir.path().join("absent").exists());
    }

    #[test]
    fn a_download_that_does_not_match_its_sha256_is_refused_and_removed() {
        let url = canned("200 OK", "hello");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("artifact");
        let client = Client::new(url, None).unwrap();
        let err = client.fetch_artifact(&"ab".repeat(32), &dest).unwrap_err().to_string();
        assert!(err.contains("has sha256"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is left behind");
    }

    #[test]
    fn error_answers_carry_the_job_managers_message() {
        let url = canned("409 Conflict", r#"{"error":"job j-1 is finished"}"#);
        let err = Client::new(url, None).unwrap().jobs().unwrap_err();
        match err {
            ClusterError::Api { status, message } => {
                assert_eq!(status, 409);
                assert_eq!(message, "job j-1 is finished");
            }
            other => panic!("{other}"),
        }
        let url = canned("401 Unauthorized", "missing token");
        let err = Client::new(url, None).unwrap().jobs().unwrap_err().to_string();
        assert!(err.contains("missing token") && err.contains("--token"), "{err}");
    }

    #[test]
    fn an_unreachable_job_manager_is_named() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::new(format!("127.0.0.1:{port}"), None).unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(err, ClusterError::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("http://127.0.0.1:{port}/api/v1/health")),
            "{text}"
        );
        assert!(text.contains("floe jobmanager"), "{text}");
    }

    #[test]
    fn base_urls_are_normalized() {
        assert_eq!(normalize_base("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(normalize_base("h:1").unwrap(), "http://h:1");
        assert_eq!(normalize_base("HTTPS://h:1/").unwrap(), "HTTPS://h:1");
        let err = normalize_base("ftp://h").unwrap_err().to_string();
        assert!(err.contains("must start with http:// or https://"), "{err}");
        assert!(normalize_base("  ").is_err());
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("j-0a"), "j-0a");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn sha256_is_checked() {
        assert!(check_sha256(&"a".repeat(64)).is_ok());
        assert!(check_sha256("../../etc/passwd").is_err());
        assert!(check_sha256(&"g".repeat(64)).is_err());
    }
}
