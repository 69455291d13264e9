//! HTTPS on the job manager: a self-signed certificate for 127.0.0.1 (made by `openssl`), clients that
//! trust it (`--ca-cert`) and clients that do not, a task manager registering over HTTPS and
//! handing the URL and the CA file to its workers, and certificates that do not load.

use std::fs;
use std::path::{Path, PathBuf};

use floe_cluster::client::{Client, ClusterArgs};
use floe_cluster::jobmanager::{JobManager, JobManagerArgs, JobManagerConfig, RunningJobManager, TlsFiles};
use floe_cluster::protocol::{RestartStrategy, SubmitRequest};
use floe_cluster::taskmanager::{TaskManager, TaskManagerArgs};
use floe_cluster::ClusterError;
use floe_testkit::cluster::worker_script;
use floe_testkit::{wait_for, DEADLINE};

fn certificate(dir: &Path) -> TlsFiles {
    TlsFiles::self_signed(dir).expect("the openssl command (scripts/deps.sh installs it)")
}

fn start_tls(dir: &Path, tls: &TlsFiles) -> RunningJobManager {
    let mut config = JobManagerConfig::new(dir.join("jm"));
    config.tls = Some(tls.clone());
    JobManager::start(config).unwrap()
}

fn trusting(jm: &RunningJobManager, ca: &Path) -> Client {
    Client::with_ca_cert(jm.url(), Some(jm.token().to_owned()), Some(ca.to_path_buf())).unwrap()
}

#[test]
fn clients_that_trust_the_certificate_get_in_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificate(dir.path());
    let jm = start_tls(dir.path(), &tls);
    assert!(jm.url().starts_with("https://127.0.0.1:"), "{}", jm.url());

    // Trusting the certificate: the API answers, and the token is still required.
    let client = trusting(&jm, &tls.cert);
    assert!(client.health().is_ok());
    assert!(client.jobs().unwrap().is_empty());
    let no_token = Client::with_ca_cert(jm.url(), None, Some(tls.cert.clone())).unwrap();
    match no_token.jobs().unwrap_err() {
        ClusterError::Api { status, .. } => assert_eq!(status, 401),
        other => panic!("expected a 401, got {other}"),
    }

    // Not trusting it: the handshake fails, and the error says which URL.
    let err = Client::new(jm.url(), Some(jm.token().to_owned()))
        .unwrap()
        .jobs()
        .unwrap_err()
        .to_string();
    assert!(err.contains(jm.url()), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Plain HTTP on the HTTPS port gets nothing.
    let plain = jm.url().replacen("https://", "http://", 1);
    assert!(Client::new(plain, Some(jm.token().to_owned())).unwrap().jobs().is_err());

    // A client that connects and never speaks holds up no one.
    let addr = jm.url().trim_start_matches("https://").to_owned();
    let _silent = std::net::TcpStream::connect(&addr).unwrap();
    assert!(client.jobs().unwrap().is_empty());
}

#[test]
fn a_task_manager_registers_over_https_and_hands_its_workers_the_url_and_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificate(dir.path());
    let jm = start_tls(dir.path(), &tls);
    let client = trusting(&jm, &tls.cert);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();

    let mut cluster = ClusterArgs::new(jm.url(), Some(jm.token().to_owned()));
    cluster.ca_cert = Some(tls.cert.clone());
    let tm = TaskManager::new(&TaskManagerArgs::new(cluster, 1, dir.path().join("tm"))).unwrap();
    let shutdown = tm.shutdown_handle();
    let running = std::thread::spawn(move || tm.run());
    wait_for("the task manager to register over HTTPS", DEADLINE, || {
        (client.taskmanagers().unwrap().len() == 1).then_some(())
    });

    // The task manager fetched the binary over HTTPS and started it with what a worker
    // needs to call back.
    let script = worker_script("env > \"$arg1/env.tmp\" && mv \"$arg1/env.tmp\" \"$arg1/env\"\nexec sleep 600\n");
    let artifact = client.upload_artifact(script.as_bytes(), Some("env.sh")).unwrap();
    let job = client
        .submit(&SubmitRequest {
            artifact: artifact.sha256,
            args: vec![out.display().to_string()],
            parallelism: 1,
            name: None,
            restart: Some(RestartStrategy::None),
            checkpoint_interval_ms: None,
            savepoint: None,
        })
        .unwrap();
    let env = wait_for("the worker's environment", DEADLINE, || {
        fs::read_to_string(out.join("env")).ok()
    });
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
    };
    assert_eq!(var("FLOE_JOB_MANAGER"), Some(PathBuf::from(jm.url())));
    let ca = var("FLOE_CA_CERT").expect("FLOE_CA_CERT is set");
    assert!(ca.is_absolute(), "{}", ca.display());
    assert_eq!(fs::read(&ca).unwrap(), fs::read(&tls.cert).unwrap());

    client.cancel(&job.id).unwrap();
    shutdown.trigger();
    running.join().unwrap().unwrap();
}

#[test]
fn certificates_that_do_not_load_stop_the_start_with_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certificate(dir.path());
    // The key and certificate swapped.
    let mut config = JobManagerConfig::new(dir.path().join("jm"));
    config.tls = Some(TlsFiles {
        cert: tls.key.clone(),
        key: tls.cert.clone(),
    });
    let err = JobManager::start(config)
        .err()
        .expect("a swapped pair is refused")
        .to_string();
    assert!(err.contains("--tls-cert") && err.contains("PKCS#8"), "{err}");
    // A missing file is named.
    let mut config = JobManagerConfig::new(dir.path().join("jm"));
    config.tls = Some(TlsFiles {
        cert: dir.path().join("nowhere.pem"),
        key: tls.key.clone(),
    });
    let err = JobManager::start(config)
        .err()
        .expect("a missing file is refused")
        .to_string();
    assert!(err.contains("nowhere.pem"), "{err}");
    // Nothing was started: the data directory's token was not even written.
    assert!(!dir.path().join("jm").join("token").exists());

    // The flags go together.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        jm: JobManagerArgs,
    }
    use clap::Parser;
    let err = Cli::try_parse_from(["jobmanager", "--tls-cert", "c.pem"])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--tls-key"), "{err}");

    // A CA file that is not a certificate is refused by the client, naming it.
    let err = Client::with_ca_cert("https://127.0.0.1:1", None, Some(tls.key.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--ca-cert") && err.contains("key.pem"), "{err}");
}
