//! The task manager: its process management with real child processes, and a task manager
//! against an in-process job manager deploying an uploaded shell-script "binary".

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use floe_cluster::client::{Client, ClusterArgs};
use floe_cluster::jobmanager::{JobManager, JobManagerConfig};
use floe_cluster::protocol::{JobState, RestartStrategy, SubmitRequest, WorkerSpec, WorkerState};
use floe_cluster::taskmanager::{Launch, TaskManager, TaskManagerArgs, WorkerProcess};
use floe_testkit::cluster::worker_script;
use floe_testkit::{alive, wait_for, DEADLINE};

/// A `sh` script in `dir`, run as `sh <script>` (not exec'd, so a concurrently forked
/// test process holding it open for writing cannot make it busy).
fn script(dir: &Path, name: &str, body: &str) -> Launch {
    let path = dir.join(name);
    fs::write(&path, body).unwrap();
    Launch {
        program: PathBuf::from("/bin/sh"),
        args: vec![path.display().to_string()],
        env: Vec::new(),
        label: format!("[test {name}]"),
        forward_stderr: false,
    }
}

fn reap_until_exit(process: &mut WorkerProcess) -> WorkerState {
    wait_for("the process to exit", DEADLINE, || {
        process.reap().unwrap().then(|| process.state())
    })
}

#[test]
fn a_worker_gets_its_environment_and_its_exit_code_and_stderr_tail_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let mut launch = script(
        dir.path(),
        "exit3.sh",
        &format!(
            "echo \"$FLOE_TEST_VALUE $1 $2\" > {out}\n\
             i=1; while [ $i -le 50 ]; do echo \"line $i\" >&2; i=$((i+1)); done\n\
             exit 3\n",
            out = out.display()
        ),
    );
    launch.args.extend(["worker".to_owned(), "x y".to_owned()]);
    launch.env.push(("FLOE_TEST_VALUE".into(), "hello".into()));
    let mut process = WorkerProcess::spawn(&launch).unwrap();
    let WorkerState::Exited { code, stderr } = reap_until_exit(&mut process) else {
        panic!("the process should have exited");
    };
    assert_eq!(code, Some(3));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 40, "{stderr}");
    assert_eq!(lines[0], "line 11");
    assert_eq!(lines[39], "line 50");
    assert_eq!(fs::read_to_string(&out).unwrap().trim(), "hello worker x y");
    // Seen once: a second reap reports nothing new.
    assert!(!process.reap().unwrap());
}

#[test]
fn kill_ends_a_running_worker() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let launch = script(
        dir.path(),
        "sleep.sh",
        &format!("echo about to sleep >&2\ntouch {}\nexec sleep 600\n", started.display()),
    );
    let mut process = WorkerProcess::spawn(&launch).unwrap();
    wait_for("the script to start", DEADLINE, || started.exists().then_some(()));
    assert!(!process.reap().unwrap(), "it should still run");
    assert_eq!(process.state(), WorkerState::Running);
    process.kill().unwrap();
    let WorkerState::Exited { code, stderr } = process.state() else {
        panic!("a killed process has exited");
    };
    assert_eq!(code, None);
    assert!(stderr.contains("about to sleep"), "{stderr}");
    assert!(stderr.contains("killed by signal 9"), "{stderr}");
}

#[test]
fn a_worker_reading_stdin_sees_end_of_file_when_its_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let saw_eof = dir.path().join("eof");
    let launch = script(
        dir.path(),
        "stdin.sh",
        &format!(
            "touch {started}\ncat > /dev/null\ntouch {eof}\nexit 0\n",
            started = started.display(),
            eof = saw_eof.display()
        ),
    );
    let mut process = WorkerProcess::spawn(&launch).unwrap();
    wait_for("the script to start", DEADLINE, || started.exists().then_some(()));
    // Its stdin is held open: it keeps waiting on it.
    assert!(!process.reap().unwrap());
    assert!(!saw_eof.exists());
    process.close_stdin();
    let state = reap_until_exit(&mut process);
    assert_eq!(
        state,
        WorkerState::Exited {
            code: Some(0),
            stderr: String::new()
        }
    );
    assert!(saw_eof.exists());
}

#[test]
fn a_program_that_cannot_start_is_an_error_naming_it() {
    let launch = Launch {
        program: PathBuf::from("/nonexistent/floe-job"),
        ..Launch::default()
    };
    let err = WorkerProcess::spawn(&launch).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/floe-job"), "{err}");
}

#[test]
fn slots_must_be_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let args = TaskManagerArgs::new(ClusterArgs::new("http://127.0.0.1:1", None), 0, dir.path());
    let err = TaskManager::new(&args).unwrap_err().to_string();
    assert!(err.contains("--slots"), "{err}");
}

/// A job "binary": a shell script that writes its arguments (`$1` is the mode word,
/// `worker`) and environment to the directory it is given (the job's one argument, which
/// comes in its spec), says something on stderr and fails.
fn failing_job() -> String {
    worker_script(
        "echo \"$@\" > \"$arg1/args.$$.tmp\"
env > \"$arg1/env.$$.tmp\"
mv \"$arg1/args.$$.tmp\" \"$arg1/args.$$\"
mv \"$arg1/env.$$.tmp\" \"$arg1/env.$$\"
echo 'worker failing on purpose' >&2
exit 7
",
    )
}

/// A task manager on a thread of its own; `stop` ends it, checking it ended cleanly.
struct RunningTm {
    shutdown: floe_cluster::taskmanager::Shutdown,
    thread: std::thread::JoinHandle<floe_cluster::Result<()>>,
}

impl RunningTm {
    fn start(url: &str, token: &str, slots: usize, dir: &Path) -> Self {
        let args = TaskManagerArgs::new(ClusterArgs::new(url, Some(token.to_owned())), slots, dir);
        let tm = TaskManager::new(&args).unwrap();
        RunningTm {
            shutdown: tm.shutdown_handle(),
            thread: std::thread::spawn(move || tm.run()),
        }
    }

    fn stop(self) {
        self.shutdown.trigger();
        self.thread.join().unwrap().unwrap();
    }
}

fn env_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("env.") && !n.ends_with(".tmp"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_task_manager_registers_deploys_an_uploaded_binary_and_reports_its_exit() {
    let jm_dir = tempfile::tempdir().unwrap();
    let tm_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let jm = JobManager::start(JobManagerConfig::new(jm_dir.path())).unwrap();
    let client = Client::new(jm.url(), Some(jm.token().to_owned())).unwrap();

    let tm = RunningTm::start(jm.url(), jm.token(), 2, tm_dir.path());

    let tms = wait_for("the task manager to register", DEADLINE, || {
        let tms = client.taskmanagers().unwrap();
        (!tms.is_empty()).then_some(tms)
    });
    assert_eq!(tms.len(), 1);
    assert_eq!(tms[0].slots, 2);
    assert_eq!(tms[0].pid, std::process::id());

    let artifact = client
        .upload_artifact(failing_job().as_bytes(), Some("failing.sh"))
        .unwrap();
    let job = client
        .submit(&SubmitRequest {
            artifact: artifact.sha256.clone(),
            args: vec![out_dir.path().display().to_string()],
            parallelism: 1,
            name: Some("failing".into()),
            restart: Some(RestartStrategy::None),
            checkpoint_interval_ms: None,
            savepoint: None,
        })
        .unwrap();

    // The worker ran with its spec, the job manager's URL and the token.
    let env_file = wait_for("the worker to write its environment", DEADLINE, || {
        env_files(out_dir.path()).into_iter().next()
    });
    let env = fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    assert_eq!(var("FLOE_JOB_MANAGER").as_deref(), Some(jm.url()));
    let spec: WorkerSpec = serde_json::from_str(&var("FLOE_WORKER_SPEC").expect("FLOE_WORKER_SPEC is set")).unwrap();
    // Not the job manager's token (which the task manager has): the attempt's credential.
    let credential = var("FLOE_TOKEN").expect("the worker has a credential");
    assert_ne!(credential, jm.token());
    assert_eq!(credential, spec.token.0);
    assert_eq!(format!("{:?}", spec.token), "<redacted>");
    assert_eq!(spec.args, vec![out_dir.path().display().to_string()]);
    // Its state directory: the task manager's, per job, private.
    let state = PathBuf::from(var("FLOE_WORKER_STATE_DIR").expect("a state directory"));
    assert_eq!(state, tm_dir.path().canonicalize().unwrap().join("state").join(&job.id));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(spec.job, job.id);
    assert_eq!(spec.artifact, artifact.sha256);
    assert_eq!(spec.worker, 0);
    let args_file = env_file.with_file_name(env_file.file_name().unwrap().to_string_lossy().replace("env.", "args."));
    let worker_args = wait_for("the worker's arguments", DEADLINE, || {
        fs::read_to_string(&args_file).ok()
    });
    assert_eq!(
        worker_args.trim(),
        "worker",
        "the job's arguments are not on its command line"
    );
    // The artifact was stored under its sha256, executable.
    assert!(tm_dir.path().join("artifacts").join(&artifact.sha256).is_file());

    // Its exit (code 7, with its stderr) reached the job manager: with no restarts allowed
    // the job fails, and the exception says why.
    let detail = wait_for("the job to fail", DEADLINE, || {
        let detail = client.job(&job.id).unwrap();
        (detail.summary.state == JobState::Failed).then_some(detail)
    });
    let messages: Vec<&str> = detail.exceptions.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("exited with code 7") && m.contains("worker failing on purpose")),
        "{messages:?}"
    );

    tm.stop();
}

#[test]
fn a_task_manager_gives_up_when_the_job_manager_stays_unreachable() {
    let tm_dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args = TaskManagerArgs::new(
        ClusterArgs::new(format!("http://127.0.0.1:{port}"), Some("t".into())),
        1,
        tm_dir.path(),
    );
    let tm = TaskManager::new(&args)
        .unwrap()
        .give_up_after(Duration::from_millis(700));
    let err = tm.run().unwrap_err().to_string();
    assert!(err.contains("gave up"), "{err}");
    assert!(err.contains("floe jobmanager"), "{err}");
}

/// A job "binary" that records its pid in the directory it is given and sleeps.
const SLEEPING_JOB: &str = "#!/bin/sh
out=$(printf '%s' \"$FLOE_WORKER_SPEC\" | sed -n 's/.*\"args\":\\[\"\\([^\"]*\\)\".*/\\1/p')
echo $$ > \"$out/pid.$$.tmp\" && mv \"$out/pid.$$.tmp\" \"$out/pid.$$\"
exec sleep 600
";

/// Uploads and submits [`SLEEPING_JOB`] at parallelism 1, its pid file going to `out`.
fn submit_sleeper(client: &Client, out: &Path) -> floe_cluster::protocol::JobSummary {
    let artifact = client
        .upload_artifact(SLEEPING_JOB.as_bytes(), Some("sleeper.sh"))
        .unwrap();
    client
        .submit(&SubmitRequest {
            artifact: artifact.sha256,
            args: vec![out.display().to_string()],
            parallelism: 1,
            name: None,
            restart: None,
            checkpoint_interval_ms: None,
            savepoint: None,
        })
        .unwrap()
}

fn pids(dir: &Path) -> Vec<String> {
    let mut pids: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("pid.")?;
            (!pid.ends_with(".tmp")).then(|| pid.to_owned())
        })
        .collect();
    pids.sort();
    pids
}

#[test]
fn a_task_manager_outlives_a_job_manager_restart_and_registers_again() {
    let jm_dir = tempfile::tempdir().unwrap();
    let tm_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let jm = JobManager::start(JobManagerConfig::new(jm_dir.path())).unwrap();
    let url = jm.url().to_owned();
    let token = jm.token().to_owned();
    let client = Client::new(&url, Some(token.clone())).unwrap();

    let tm = RunningTm::start(&url, &token, 1, tm_dir.path());
    let first_id = wait_for("the task manager to register", DEADLINE, || {
        client.taskmanagers().unwrap().first().map(|tm| tm.id.clone())
    });

    submit_sleeper(&client, out_dir.path());
    let first_pid = wait_for("the worker to start", DEADLINE, || {
        pids(out_dir.path()).into_iter().next()
    });

    // The job manager goes away: the worker keeps running while the task manager retries.
    let bind: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    jm.shutdown();
    assert!(alive(&first_pid));

    // A new job manager on the same address and data directory does not know the task
    // manager: it kills its worker and registers again.
    let mut config = JobManagerConfig::new(jm_dir.path());
    config.bind = bind;
    let jm = JobManager::start(config).unwrap();
    assert_eq!(jm.token(), token);
    let second_id = wait_for("the task manager to register again", DEADLINE, || {
        client
            .taskmanagers()
            .ok()?
            .first()
            .map(|tm| tm.id.clone())
            .filter(|id| *id != first_id)
    });
    assert_ne!(second_id, first_id);
    wait_for("the old worker to be killed", DEADLINE, || {
        (!alive(&first_pid)).then_some(())
    });

    tm.stop();
    // Its workers (the job ran again on it) were killed on the way out.
    for pid in pids(out_dir.path()) {
        assert!(!alive(&pid), "worker {pid} outlived its task manager");
    }
}

#[test]
fn cancelling_a_job_kills_its_worker() {
    let jm_dir = tempfile::tempdir().unwrap();
    let tm_dir = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let jm = JobManager::start(JobManagerConfig::new(jm_dir.path())).unwrap();
    let client = Client::new(jm.url(), Some(jm.token().to_owned())).unwrap();
    let tm = RunningTm::start(jm.url(), jm.token(), 1, tm_dir.path());

    let job = submit_sleeper(&client, out_dir.path());
    let pid = wait_for("the worker to start", DEADLINE, || {
        pids(out_dir.path()).into_iter().next()
    });
    assert!(alive(&pid));

    assert_eq!(client.cancel(&job.id).unwrap().state, JobState::Cancelled);
    wait_for("the worker to be killed", DEADLINE, || (!alive(&pid)).then_some(()));
    // Its slot is free again.
    wait_for("the slot to be released", DEADLINE, || {
        let tms = client.taskmanagers().unwrap();
        (tms.first()?.slots_used == 0).then_some(())
    });

    tm.stop();
}
