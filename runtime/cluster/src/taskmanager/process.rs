//! One worker process of a task manager: spawning it with its environment and a piped
//! stdin held open for its life, forwarding its stderr with a prefix while keeping the
//! last lines, reaping its exit and killing it.
//!
//! The stdin pipe is the worker's lifeline: a worker exits when its stdin reaches end of
//! file, so when the task manager dies (even by SIGKILL) its workers follow.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{ClusterError, Result};
use crate::protocol::WorkerState;

/// Lines of stderr kept for the exit report.
pub const STDERR_TAIL_LINES: usize = 40;
/// The longest line kept (longer ones are cut).
const MAX_LINE_BYTES: usize = 4096;
/// How long to wait, once the process exited, for the rest of its stderr.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts to exec a binary that another process still has open for writing.
const BUSY_RETRIES: u32 = 20;

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set in addition to the task manager's own.
    pub env: Vec<(String, String)>,
    /// The prefix of its forwarded stderr lines (e.g. `[j-1 attempt 3 worker 0]`).
    pub label: String,
    /// Whether to forward its stderr lines to the task manager's stderr (they are kept for
    /// the exit report either way).
    pub forward_stderr: bool,
}

/// A running (or exited, not yet forgotten) worker process.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    /// Held open for the process's life; dropping it closes its stdin.
    stdin: Option<ChildStdin>,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// Signals when the stderr reader has seen end of file.
    drained: Option<mpsc::Receiver<()>>,
    exit: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts `launch` with stdin piped (and kept open), stdout inherited and stderr read
    /// by a thread.
    pub fn spawn(launch: &Launch) -> Result<WorkerProcess> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = spawn_retrying(&mut command)
            .map_err(|e| ClusterError::io(format!("cannot start {}", launch.program.display()), e))?;
        let stdin = child.stdin.take();
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let (done, drained) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            let label = launch.label.clone();
            let forward = launch.forward_stderr;
            let spawned = std::thread::Builder::new()
                .name(format!("stderr {label}"))
                .spawn(move || {
                    read_stderr(stderr, &label, forward, &tail);
                    let _ = done.send(());
                });
            if let Err(e) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ClusterError::io("cannot start a stderr reader thread", e));
            }
        }
        Ok(WorkerProcess {
            child,
            stdin,
            tail,
            drained: Some(drained),
            exit: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has been seen to exit.
    pub fn has_exited(&self) -> bool {
        self.exit.is_some()
    }

    /// Checks (without blocking) whether it exited; returns true the first time it is seen
    /// exited. Its stdin is closed then and the rest of its stderr collected.
    pub fn reap(&mut self) -> Result<bool> {
        if self.exit.is_some() {
            return Ok(false);
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited(status);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(ClusterError::io(
                format!("cannot check on worker process {}", self.child.id()),
                e,
            )),
        }
    }

    /// Kills it (SIGKILL) and waits for it to end; nothing if it already ended.
    pub fn kill(&mut self) -> Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        // An error here means it already exited; `wait` below says how.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .map_err(|e| ClusterError::io(format!("cannot wait for worker process {}", self.child.id()), e))?;
        self.exited(status);
        Ok(())
    }

    /// Closes its stdin (a worker takes it as the order to exit).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its state for a heartbeat.
    pub fn state(&self) -> WorkerState {
        match self.exit {
            None => WorkerState::Running,
            Some(status) => WorkerState::Exited {
                code: status.code(),
                stderr: self.stderr_tail(),
            },
        }
    }

    /// The last lines of its stderr (and, once killed by a signal, a line saying which).
    pub fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
        if let Some(signal) = self.exit.and_then(signal_of) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&format!("(killed by signal {signal})"));
        }
        text
    }

    fn exited(&mut self, status: ExitStatus) {
        self.exit = Some(status);
        self.stdin = None;
        // The reader ends at end of file; a grandchild holding the pipe open must not block
        // the task manager, so the wait is bounded.
        if let Some(drained) = self.drained.take() {
            let _ = drained.recv_timeout(STDERR_DRAIN_TIMEOUT);
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

/// Spawns, retrying while the binary is busy (just written, and still open for writing in
/// a process forked meanwhile by another thread: the descriptor closes at its exec).
fn spawn_retrying(command: &mut Command) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && tries < BUSY_RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Reads stderr line by line until end of file: forwards each line (prefixed with the
/// label) and keeps the last [`STDERR_TAIL_LINES`].
fn read_stderr(stderr: impl io::Read, label: &str, forward: bool, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while raw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            raw.pop();
        }
        raw.truncate(MAX_LINE_BYTES);
        let line = String::from_utf8_lossy(&raw).into_owned();
        if forward {
            let _ = writeln!(io::stderr().lock(), "{label} {line}");
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
