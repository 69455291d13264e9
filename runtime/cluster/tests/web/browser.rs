//! Headless Chromium for the web page's tests: finding the binary, one-shot runs
//! (`--screenshot`, `--dump-dom`), and a browser driven over the DevTools Protocol.
//!
//! Every Chromium runs in its own process group with a fresh `--user-data-dir`, and is
//! killed (the whole group) when its guard drops, also when a test panics.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `$FLOE_CHROMIUM`, else `chromium`, `chromium-browser` or
/// `google-chrome` on the PATH. Fails the test (never skips it) when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOE_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FLOE_CHROMIUM={} is not a file: point it at a Chromium binary, or unset it and run scripts/deps.sh",
            path.display()
        );
        return path;
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the web page tests need Chromium and none was found on the PATH: run scripts/deps.sh \
         (it installs Debian's `chromium`), or set FLOE_CHROMIUM to a Chromium binary"
    );
}

/// A running Chromium and its process group; killed on drop.
struct Process {
    child: Child,
}

impl Process {
    /// Starts `cmd` in a process group of its own.
    fn spawn(mut cmd: Command) -> Process {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Chromium ({cmd:?}): {e}"));
        Process { child }
    }

    /// Waits for the process to end by itself; kills it past `timeout`.
    fn wait(&mut self, timeout: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => panic!("Chromium did not finish {what} within {timeout:?}"),
                Err(e) => panic!("cannot wait for Chromium: {e}"),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // The browser's helpers (zygote, renderers, GPU) share its process group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags every run shares: headless, no sandbox (tests run as root), a fresh profile.
fn base_command(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// What a one-shot run printed.
pub struct Output {
    /// Its standard output (the DOM, for `--dump-dom`).
    pub stdout: String,
    /// Its standard error (for failure messages).
    pub stderr: String,
}

/// Runs Chromium once on `url` with `extra` flags (e.g. `--screenshot=...`), letting the
/// page's scripts run for `budget_ms` of virtual time (network waits pause that clock).
pub fn run_once(extra: &[String], url: &str, budget_ms: u64) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory for Chromium");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = base_command(&dir.path().join("profile"));
    cmd.arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut process = Process::spawn(cmd);
    let status = process.wait(Duration::from_secs(120), "a one-shot run");
    drop(process);
    let output = Output {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "Chromium {extra:?} {url} failed ({status}); its stderr:\n{}",
        output.stderr
    );
    output
}

/// A headless Chromium showing one page, driven over the DevTools Protocol.
pub struct Browser {
    cdp: Cdp,
    log: Arc<Mutex<String>>,
    // Dropped after the connection: kills the browser, then removes its profile.
    _process: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on `url` with remote debugging on a port it picks, and connects to
    /// the page.
    pub fn launch(url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("temporary profile directory");
        let mut cmd = base_command(profile.path());
        cmd.arg("--remote-debugging-port=0")
            .arg("--remote-allow-origins=*")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Process::spawn(cmd);
        let stderr = process.child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    if let Some(at) = line.find("DevTools listening on ") {
                        let _ = tx.send(line[at + "DevTools listening on ".len()..].to_string());
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let browser_ws = rx.recv_timeout(Duration::from_secs(90)).unwrap_or_else(|_| {
            panic!(
                "Chromium did not say `DevTools listening on` within 90 s; its stderr:\n{}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            )
        });
        // ws://127.0.0.1:PORT/devtools/browser/ID
        let host_port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let page_ws = find_page(&host_port);
        let cdp = Cdp::connect(&page_ws, &host_port);
        let mut browser = Browser {
            cdp,
            log,
            _process: process,
            _profile: profile,
        };
        browser.cdp.call("Page.enable", json!({}));
        browser
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        self.try_eval(expr)
            .unwrap_or_else(|details| panic!("the page threw on `{expr}`: {details}"))
    }

    /// Evaluates `expr`; `Err` with the exception's description if it threw.
    fn try_eval(&mut self, expr: &str) -> Result<Value, String> {
        let answer = self.cdp.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        match answer.get("exceptionDetails") {
            Some(details) => Err(details["exception"]["description"]
                .as_str()
                .map_or_else(|| details.to_string(), str::to_string)),
            None => Ok(answer["result"]["value"].clone()),
        }
    }

    /// Polls `expr` until it is truthy (not null, false, 0 or ""), for up to `timeout`;
    /// returns its value. Throwing counts as not yet (the page may still be loading). On
    /// time-out, fails with `what` and the page's text.
    pub fn wait_for(&mut self, expr: &str, what: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (value, thrown) = match self.try_eval(expr) {
                Ok(value) => (value, None),
                Err(thrown) => (Value::Null, Some(thrown)),
            };
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.eval("document.body ? document.body.innerText : ''");
                let outcome = thrown.map_or_else(|| format!("was {value}"), |t| format!("threw {t}"));
                panic!(
                    "waited {timeout:?} for {what} (`{expr}` {outcome}); the page shows:\n{}\n\
                     Chromium's stderr:\n{}",
                    text.as_str().unwrap_or_default(),
                    self.log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `selector` picks the way a person would: scrolls it into view,
    /// then presses and releases the left mouse button at its centre.
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("selector as JSON");
        let centre = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        let (x, y) = match (centre[0].as_f64(), centre[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => panic!("nothing to click: no element matches {selector}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.cdp.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// The messages of the JavaScript dialogs (confirm, alert) shown so far; each was
    /// accepted.
    pub fn dialogs(&self) -> &[String] {
        &self.cdp.dialogs
    }
}

/// The websocket URL of the page target, polled from `/json/list`.
fn find_page(host_port: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = ureq::get(&format!("http://{host_port}/json/list"))
            .timeout(Duration::from_secs(5))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok());
        let page = listed.as_ref().and_then(Value::as_array).and_then(|targets| {
            targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string)
        });
        match page {
            Some(url) => return url,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("Chromium lists no page target at http://{host_port}/json/list: {listed:?}"),
        }
    }
}

/// A DevTools Protocol connection to one page: commands with ids, answers matched by id.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    dialogs: Vec<String>,
}

impl Cdp {
    fn connect(url: &str, host_port: &str) -> Cdp {
        let stream = TcpStream::connect(host_port)
            .unwrap_or_else(|e| panic!("cannot connect to Chromium's DevTools at {host_port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        let (ws, _) = tungstenite::client::client(url, stream)
            .unwrap_or_else(|e| panic!("DevTools websocket handshake with {url} failed: {e}"));
        Cdp {
            ws,
            next_id: 1,
            dialogs: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let text = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("cannot send {method} to Chromium: {e}"));
        id
    }

    /// Sends a command and returns its result, accepting any dialog the page opens
    /// meanwhile (a click on a button that asks `confirm()` answers only once it closed).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "Chromium did not answer {method} within 60 s"
            );
            let message = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection failed while waiting for {method}: {e}"),
            };
            let Ok(value) = serde_json::from_str::<Value>(message.as_str()) else {
                continue;
            };
            if value["method"] == "Page.javascriptDialogOpening" {
                let text = value["params"]["message"].as_str().unwrap_or_default();
                self.dialogs.push(text.to_string());
                self.send("Page.handleJavaScriptDialog", json!({ "accept": true }));
                continue;
            }
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    panic!("Chromium refused {method}: {error}");
                }
                return value["result"].clone();
            }
        }
    }
}
