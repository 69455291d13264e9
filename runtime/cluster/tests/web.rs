//! The job manager's web page in a real headless Chromium (Debian's `chromium`; run
//! `scripts/deps.sh` to install it — without it these tests fail, they do not skip).
//!
//! Each test starts an in-process job manager and seeds it through its REST API only (an
//! artifact, a job, a fake task manager heartbeating over HTTP and a fake worker posting
//! events), then loads the page the job manager serves and checks what it renders, or
//! clicks its buttons through the DevTools Protocol and checks the job manager's state.

#[path = "web/browser.rs"]
mod browser;
#[path = "web/seed.rs"]
mod seed;

use std::time::Duration;

use floe_cluster::jobmanager::{JobManager, JobManagerConfig, RunningJobManager};
use floe_cluster::protocol::JobState;
use serde_json::Value;

use browser::Browser;
use seed::{Api, CHECKPOINTS, JOB_NAME, OPERATORS, SAVEPOINT_CHECKPOINT};

/// How long a page may take to show something (Chromium's first start is slow).
const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// A job manager on a free loopback port with its store in a temporary directory.
struct Cluster {
    jm: RunningJobManager,
    api: Api,
    _store: tempfile::TempDir,
}

fn start_cluster() -> Cluster {
    let store = tempfile::tempdir().expect("temporary store");
    let jm = JobManager::start(JobManagerConfig::new(store.path())).expect("start the job manager");
    let api = Api::new(jm.url(), jm.token());
    Cluster { jm, api, _store: store }
}

impl Cluster {
    /// The page's address with a fragment (`token=...&job=...`).
    fn page(&self, fragment: &str) -> String {
        format!("{}/#{fragment}", self.jm.url().trim_end_matches('/'))
    }
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("string as JSON")
}

#[test]
fn the_page_is_served_without_a_token() {
    let cluster = start_cluster();
    let resp = ureq::get(&format!("{}/", cluster.jm.url().trim_end_matches('/')))
        .call()
        .expect("GET / without a token");
    let content_type = resp.header("content-type").unwrap_or_default().to_string();
    let body = resp.into_string().expect("the page as text");
    assert!(content_type.starts_with("text/html"), "content-type is {content_type}");
    assert!(body.contains("<title>Floe job manager</title>"), "{body}");
    // One self-contained file: nothing loaded from elsewhere.
    for external in ["src=\"http", "href=\"http", "<link ", "@import"] {
        assert!(
            !body.contains(external),
            "the page loads an external resource ({external})"
        );
    }
}

#[test]
fn screenshot_and_dom_show_the_job_graph_and_checkpoints() {
    let cluster = start_cluster();
    let seeded = seed::seed(&cluster.api);
    assert_eq!(cluster.api.job(&seeded.job).attempt, Some(seeded.attempt));
    let url = cluster.page(&format!("token={}&job={}", cluster.jm.token(), seeded.job));

    // The DOM after the scripts ran: proves the page fetched the job from the API.
    let dom = browser::run_once(&["--dump-dom".to_string()], &url, 5_000).stdout;
    let expect = |needle: &str, what: &str| {
        assert!(dom.contains(needle), "the rendered DOM lacks {what} ({needle}):\n{dom}");
    };
    expect(JOB_NAME, "the job's name");
    expect("data-state=\"running\"", "the job's state");
    for name in OPERATORS {
        expect(name, "an operator of the graph");
    }
    expect("class=\"operator source\"", "the source drawn in the SVG graph");
    expect(">hash<", "the ship strategy on an edge");
    expect(
        &format!("data-checkpoint=\"{}\"", CHECKPOINTS[1]),
        "the newest checkpoint",
    );
    expect(
        &format!("data-checkpoint=\"{}\"", CHECKPOINTS[0]),
        "the older checkpoint",
    );
    expect("in 1.5k/s", "the records-per-second figures");
    expect("bp 85%", "the backpressure of the source");
    // (The script's own text holds the messages: the body's flag tells whether one shows.)
    assert!(
        !dom.contains("data-error=\"auth\"") && !dom.contains("data-error=\"api\""),
        "the page reports an error:\n{dom}"
    );

    // The screenshot: a 1280x900 PNG that is not blank.
    let dir = tempfile::tempdir().expect("temporary directory");
    let png_path = dir.path().join("job.png");
    browser::run_once(&[format!("--screenshot={}", png_path.display())], &url, 5_000);
    let png = std::fs::read(&png_path).expect("Chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR", "the PNG does not start with its header chunk");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), (1280, 900), "the screenshot's size");
    let mut seen = [false; 256];
    for b in &png {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    // A blank page compresses to a few hundred bytes of few distinct values.
    assert!(
        png.len() > 20_000 && distinct > 200,
        "the screenshot looks blank: {} bytes, {distinct} distinct byte values",
        png.len()
    );
    // Kept for a person to look at.
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-job.png");
    let _ = std::fs::copy(&png_path, keep);
}

#[test]
fn clicks_on_savepoint_and_cancel_reach_the_job_manager() {
    let cluster = start_cluster();
    let seeded = seed::seed(&cluster.api);
    let job = seeded.job.clone();
    let mut page = Browser::launch(&cluster.page(&format!("token={}", cluster.jm.token())));

    // The job list, refreshed from the API.
    let row = format!("#jobs tbody tr[data-job={}]", js(&job));
    let state = page.wait_for(
        &format!(
            "document.querySelector({})?.querySelector('.state')?.textContent",
            js(&row)
        ),
        "the job's row",
        PAGE_DEADLINE,
    );
    assert_eq!(state, "running");
    let hash = page.eval("location.hash");
    assert!(
        !hash.as_str().unwrap_or_default().contains("token"),
        "the token stays in the address bar: {hash}"
    );
    page.wait_for(
        "document.querySelectorAll('#taskmanagers tbody tr').length === 1",
        "the task manager's row",
        PAGE_DEADLINE,
    );
    let free = page.eval("document.querySelector('#taskmanagers tbody tr .slots-free').textContent");
    assert_eq!(free, "2", "4 slots, 2 used by the job");

    // A click on the row opens the job.
    page.click(&format!("{row} td.name"));
    page.wait_for(
        "!document.querySelector('#detail').hidden && document.querySelectorAll('svg#graph .operator').length === 3",
        "the job's detail with its graph",
        PAGE_DEADLINE,
    );
    assert_eq!(page.eval("location.hash"), Value::from(format!("#job={job}")));
    assert_eq!(page.eval("document.querySelector('#job-name').textContent"), JOB_NAME);

    // Savepoint: the fake worker writes it; the page shows the API's answer.
    page.click("button.savepoint");
    let said = page.wait_for(
        "(() => { const s = document.querySelector('#action-status'); \
         return s.classList.contains('pending') ? '' : s.className + ': ' + s.textContent; })()",
        "the answer to the savepoint",
        PAGE_DEADLINE,
    );
    let said = said.as_str().unwrap_or_default().to_string();
    assert!(
        said.starts_with("ok: Savepoint written to") && said.contains(&format!("checkpoint {SAVEPOINT_CHECKPOINT}")),
        "the status line says: {said}"
    );
    let detail = cluster.api.job(&job);
    assert!(
        detail
            .checkpoints
            .iter()
            .any(|c| c.id == SAVEPOINT_CHECKPOINT && c.is_savepoint),
        "the job manager has no savepoint {SAVEPOINT_CHECKPOINT}: {:?}",
        detail.checkpoints
    );

    // Cancel: the page asks first (Chromium's dialog, accepted), then the job is cancelled.
    page.click("button.cancel");
    cluster.api.wait_job(&job, "cancelled", PAGE_DEADLINE, |j| {
        j.summary.state == JobState::Cancelled
    });
    assert!(
        page.dialogs().iter().any(|d| d.contains(&format!("Cancel job {job}"))),
        "no confirmation was asked: {:?}",
        page.dialogs()
    );
    page.wait_for(
        "document.querySelector('#job-state').dataset.state === 'cancelled' \
         && document.querySelector('button.cancel').disabled",
        "the page to show the job cancelled",
        PAGE_DEADLINE,
    );
    let said = page.eval("document.querySelector('#action-status').textContent");
    assert!(
        said.as_str().unwrap_or_default().contains("is now cancelled"),
        "the status line says: {said}"
    );
    drop(seeded);
}

#[test]
fn cancel_asks_first_and_a_refusal_changes_nothing() {
    let cluster = start_cluster();
    let seeded = seed::seed(&cluster.api);
    let mut page = Browser::launch(&cluster.page(&format!("token={}&job={}", cluster.jm.token(), seeded.job)));
    page.wait_for(
        "document.querySelector('#job-state')?.dataset.state === 'running'",
        "the job's detail",
        PAGE_DEADLINE,
    );
    // The automation hook answers the confirmation: "no".
    page.eval("window.floeAsked = []; window.floeConfirm = (m) => { floeAsked.push(m); return false; }; true");
    page.click("button.cancel");
    page.wait_for("window.floeAsked.length === 1", "the confirmation", PAGE_DEADLINE);
    assert_eq!(page.eval("document.querySelector('#action-status').textContent"), "");
    assert!(page.dialogs().is_empty(), "the hook did not replace confirm()");
    assert_eq!(cluster.api.job(&seeded.job).summary.state, JobState::Running);
}

#[test]
fn a_wrong_token_shows_an_authentication_error_and_the_form_recovers() {
    let cluster = start_cluster();
    let seeded = seed::seed(&cluster.api);
    let mut page = Browser::launch(&cluster.page("token=not-the-token"));
    let status = page.wait_for(
        "document.querySelector('#status.error')?.textContent",
        "an error",
        PAGE_DEADLINE,
    );
    let status = status.as_str().unwrap_or_default();
    assert!(
        status.contains("Authentication failed (401)"),
        "the page says: {status}"
    );
    assert_eq!(page.eval("document.body.dataset.error"), "auth");
    assert_eq!(page.eval("document.querySelector('#login-card').hidden"), false);
    assert_eq!(page.eval("document.querySelectorAll('#jobs tbody tr').length"), 0);

    // The right token typed into the form shows the jobs.
    page.eval(&format!(
        "document.querySelector('#token-input').value = {}; true",
        js(cluster.jm.token())
    ));
    page.click("#login button[type=submit]");
    page.wait_for(
        &format!("document.querySelector('#jobs tbody tr[data-job={}]')", js(&seeded.job)),
        "the job list after entering the right token",
        PAGE_DEADLINE,
    );
    assert_eq!(page.eval("document.querySelector('#status').textContent"), "");
}

#[test]
fn a_job_manager_that_goes_away_is_reported_as_unreachable() {
    let store = tempfile::tempdir().expect("temporary store");
    let jm = JobManager::start(JobManagerConfig::new(store.path())).expect("start the job manager");
    let url = format!("{}/#token={}", jm.url(), jm.token());
    let mut page = Browser::launch(&url);
    page.wait_for(
        "document.querySelector('#jobs-empty') && !document.querySelector('#jobs-empty').hidden \
         && !document.querySelector('#overview').hidden",
        "the empty job list",
        PAGE_DEADLINE,
    );
    jm.shutdown();
    let status = page.wait_for(
        "document.querySelector('#status.error')?.textContent",
        "the error once the job manager is gone",
        PAGE_DEADLINE,
    );
    let status = status.as_str().unwrap_or_default();
    assert!(
        status.contains("The job manager is unreachable"),
        "the page says: {status}"
    );
    assert_eq!(page.eval("document.body.dataset.error"), "api");
}

#[test]
fn a_refused_savepoint_shows_the_api_error() {
    let cluster = start_cluster();
    // No task manager: the job stays scheduled, and the job manager refuses a savepoint.
    let job = seed::submit(&cluster.api);
    let mut page = Browser::launch(&cluster.page(&format!("token={}&job={job}", cluster.jm.token())));
    page.wait_for(
        "document.querySelector('#job-state')?.dataset.state === 'scheduled' \
         && !document.querySelector('button.savepoint').disabled",
        "the scheduled job's detail",
        PAGE_DEADLINE,
    );
    page.click("button.savepoint");
    let said = page.wait_for(
        "document.querySelector('#action-status.error')?.textContent",
        "the refusal",
        PAGE_DEADLINE,
    );
    let said = said.as_str().unwrap_or_default();
    assert!(
        said.contains("failed (409)") && said.contains("only be taken while it is running"),
        "the status line says: {said}"
    );
}
