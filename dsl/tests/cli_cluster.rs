//! The cluster commands of the real `floe` binary against a real job manager (`floe
//! jobmanager` on a free port) and task manager (`floe taskmanager`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use floe_testkit::cluster::{worker_script, Cluster, ClusterOptions};
use floe_testkit::{alive, wait_for, DEADLINE};

fn floe() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_floe"));
    command.env_remove("FLOE_TOKEN").env_remove("FLOE_JOB_MANAGER");
    command
}

/// `floe jobmanager` on a free port of 127.0.0.1, its token made up in its data directory,
/// and the task managers a test adds.
struct JobManager {
    cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl JobManager {
    fn start() -> JobManager {
        let dir = tempfile::tempdir().unwrap();
        let options = ClusterOptions {
            generated_token: true,
            ..ClusterOptions::default()
        };
        JobManager {
            cluster: Cluster::start_with(dir.path(), &[], options),
            _dir: dir,
        }
    }

    fn url(&self) -> &str {
        &self.cluster.url
    }

    /// `floe <command> --job-manager URL --token-file PATH <rest>`.
    fn run(&self, args: &[&str]) -> Output {
        // The connection flags go right after the subcommand (anything after `--` is the
        // job's).
        let (command, rest) = args.split_first().expect("a subcommand");
        floe()
            .arg(command)
            .args(self.cluster.connection_args())
            .args(rest)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args);
        assert!(out.status.success(), "floe {args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("floe {args:?} printed no JSON ({e}): {}", text(&out.stdout)))
    }

    fn token(&self) -> String {
        fs::read_to_string(self.cluster.token_file()).unwrap().trim().to_owned()
    }

    /// Starts `floe taskmanager` (one slot, with the token file) and waits until it
    /// registered; returns its index in `cluster.tms`.
    fn start_task_manager(&mut self) -> usize {
        self.cluster.add_task_manager(1);
        let n = self.cluster.tms.len();
        self.cluster.wait_task_managers(n);
        n - 1
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A "job binary": a shell script; `$arg1` is the job's first argument.
fn job_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, worker_script(body)).unwrap();
    path
}

#[test]
fn help_lists_the_commands() {
    let out = floe().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in [
        "tail",
        "jobmanager",
        "taskmanager",
        "submit",
        "list",
        "status",
        "cancel",
        "savepoint",
        "stop",
        "resume",
        "rescale",
        "taskmanagers",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} is missing from:\n{help}"
        );
    }
}

#[test]
fn submit_status_list_and_cancel_a_job() {
    let jm = JobManager::start();
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(jm.json(&["list", "--json"]), serde_json::json!([]));
    assert_eq!(jm.json(&["taskmanagers", "--json"]), serde_json::json!([]));

    let binary = job_script(dir.path(), "wordcount", "exit 0\n");
    let binary_path = binary.display().to_string();
    let out = jm.run(&[
        "submit",
        &binary_path,
        "--parallelism",
        "2",
        "--restart",
        "fixed:3:100",
        "--",
        "--input",
        "words.txt",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert!(id.starts_with("j-"), "submit printed {id:?}");

    // No task manager: it waits for slots.
    let status = jm.json(&["status", &id, "--json"]);
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["name"], "wordcount");
    assert_eq!(status["parallelism"], 2);
    assert_eq!(status["state"], "scheduled");
    assert_eq!(status["args"], serde_json::json!(["--input", "words.txt"]));
    assert_eq!(status["restart"]["type"], "fixed-delay");

    let human = text(&jm.run(&["status", &id]).stdout);
    assert!(human.contains(&id) && human.contains("scheduled"), "{human}");
    assert!(human.contains("History") && human.contains("Exceptions"), "{human}");
    let list = text(&jm.run(&["list"]).stdout);
    assert!(list.starts_with("ID "), "{list}");
    assert!(list.contains(&id) && list.contains("wordcount"), "{list}");

    // What needs a running (or stopped) job is refused with the job manager's reason.
    for (command, args) in [
        ("savepoint", vec!["savepoint", id.as_str()]),
        ("stop", vec!["stop", id.as_str(), "--dir", "/tmp/floe-sp"]),
        ("resume", vec!["resume", id.as_str()]),
        ("rescale", vec!["rescale", id.as_str(), "--parallelism", "3"]),
    ] {
        let out = jm.run(&args);
        assert_eq!(out.status.code(), Some(1), "floe {command}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("floe {command}: job manager answered 409")),
            "{err}"
        );
        assert!(err.contains(&id), "{err}");
    }

    let out = jm.run(&["cancel", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("job {id} is cancelled"));
    assert_eq!(jm.json(&["status", &id, "--json"])["state"], "cancelled");
    let jobs = jm.json(&["list", "--json"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
}

#[test]
fn errors_exit_1_with_a_message_saying_what_to_change() {
    let jm = JobManager::start();

    let out = jm.run(&["status", "j-000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("floe status: "), "{err}");
    assert!(err.contains("j-000000000000"), "{err}");

    // No token.
    let out = floe().args(["list", "--job-manager", jm.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("floe list: ") && err.contains("--token"), "{err}");

    // The token from the environment works.
    let out = floe()
        .args(["list", "--json"])
        .env("FLOE_JOB_MANAGER", jm.url())
        .env("FLOE_TOKEN", jm.token())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = floe()
        .args(["list", "--token", "x", "--job-manager"])
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("floe jobmanager"), "{err}");

    let out = floe()
        .args(["list", "--job-manager", "ftp://example.invalid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("must start with http:// or https://"));

    let out = floe()
        .args([
            "list",
            "--job-manager",
            "https://127.0.0.1:1",
            "--ca-cert",
            "/nonexistent/ca.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("--ca-cert"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = floe().args(["submit", "x", "--parallelism", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("at least 1"), "{}", text(&out.stderr));

    let out = floe().args(["submit", "x", "--restart", "always"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("none, fixed:<attempts>:<delay_ms>"), "{err}");

    let out = floe().args(["taskmanager", "--slots", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("at least 1 slot"));
}

#[test]
fn workers_die_with_their_task_manager() {
    let mut jm = JobManager::start();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    // The worker waits for the end of its stdin, then says so.
    let binary = job_script(
        dir.path(),
        "lifeline",
        "echo $$ > \"$arg1/pid.tmp\" && mv \"$arg1/pid.tmp\" \"$arg1/pid\"\n\
         cat > /dev/null\n\
         touch \"$arg1/eof\"\n",
    );
    let tm = jm.start_task_manager();
    let out = jm.run(&[
        "submit",
        &binary.display().to_string(),
        "--",
        &out_dir.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = wait_for("the worker to start", DEADLINE, || {
        fs::read_to_string(out_dir.join("pid")).ok()
    });
    assert!(alive(pid.trim()));
    assert!(!out_dir.join("eof").exists());

    // SIGKILL: the task manager cannot clean up, but its workers' stdin closes.
    jm.cluster.tms[tm].kill();
    wait_for("the worker to see the end of its stdin", DEADLINE, || {
        out_dir.join("eof").exists().then_some(())
    });
    wait_for("the worker to exit", DEADLINE, || (!alive(pid.trim())).then_some(()));
}

#[test]
fn sigterm_kills_the_workers_and_exits_0() {
    let mut jm = JobManager::start();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    // A worker that ignores its stdin: only a kill ends it.
    let binary = job_script(
        dir.path(),
        "sleeper",
        "echo $$ > \"$arg1/pid.tmp\" && mv \"$arg1/pid.tmp\" \"$arg1/pid\"\nexec sleep 600\n",
    );
    let tm = jm.start_task_manager();
    let out = jm.run(&[
        "submit",
        &binary.display().to_string(),
        "--",
        &out_dir.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = wait_for("the worker to start", DEADLINE, || {
        fs::read_to_string(out_dir.join("pid")).ok()
    });
    assert!(alive(pid.trim()));

    let killed = Command::new("kill")
        .args(["-TERM", &jm.cluster.tms[tm].pid()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_for("the task manager to exit", DEADLINE, || {
        jm.cluster.tms[tm].0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));
    assert!(!alive(pid.trim()), "the worker {pid} outlived its task manager");
}
