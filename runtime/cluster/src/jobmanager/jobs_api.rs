//! The user-facing handlers: health, the web page, jobs (submit, list, detail, cancel,
//! savepoint, stop, resume, rescale), task managers and `/metrics`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use crate::protocol::{
    Health, JobDetail, JobState, JobSummary, RescaleRequest, ResumeRequest, SavepointInfo, SavepointRequest,
    SubmitRequest, TaskManagerInfo,
};

use super::api::{ApiFailure, ApiJson, ApiPath, ApiResult};
use super::cluster::Cluster;
use super::shared::Shared;
use super::token::random_hex;

/// The web page.
const INDEX_HTML: &str = include_str!("../../web/index.html");

/// Extra time the HTTP answer waits beyond the state machine's savepoint deadline.
const SAVEPOINT_SLACK: Duration = Duration::from_secs(5);

/// `GET /api/v1/health`.
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// `GET /`.
pub(crate) async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.inspect(|c| super::metrics::render(c));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /api/v1/jobs`.
pub(crate) async fn list_jobs(State(shared): State<Arc<Shared>>) -> Json<Vec<JobSummary>> {
    Json(shared.inspect(|c| c.list_jobs()))
}

/// `GET /api/v1/taskmanagers`.
pub(crate) async fn list_task_managers(State(shared): State<Arc<Shared>>) -> Json<Vec<TaskManagerInfo>> {
    Json(shared.inspect(|c| c.task_managers()))
}

/// `POST /api/v1/jobs`.
pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    ApiJson(req): ApiJson<SubmitRequest>,
) -> ApiResult<JobSummary> {
    Cluster::check_parallelism(req.parallelism)?;
    let known = shared.store.artifact_path(&req.artifact).is_some_and(|p| p.is_file());
    if !known {
        return Err(ApiFailure::not_found(format!(
            "unknown artifact {}: upload it first",
            req.artifact
        )));
    }
    if let Some(sp) = &req.savepoint {
        check_savepoint(sp)?;
    }
    let id = format!("j-{}", random_hex(6).map_err(|e| ApiFailure::internal(e.to_string()))?);
    let summary = shared.mutate(|c, now| c.submit(id, req, now))?;
    tracing::info!(job = %summary.id, name = %summary.name, "job submitted");
    Ok(Json(summary))
}

fn check_savepoint(dir: &str) -> Result<(), ApiFailure> {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(ApiFailure::bad_request(format!(
            "savepoint {dir:?} is relative: give its absolute path on the job manager's machine"
        )));
    }
    if !path.is_dir() {
        return Err(ApiFailure::bad_request(format!(
            "savepoint {dir} does not exist on the job manager's machine"
        )));
    }
    Ok(())
}

/// `GET /api/v1/jobs/{id}`.
pub(crate) async fn job_detail(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<JobDetail> {
    Ok(Json(shared.inspect(|c| c.job_detail(&id))?))
}

/// `POST /api/v1/jobs/{id}/cancel`.
pub(crate) async fn cancel(State(shared): State<Arc<Shared>>, ApiPath(id): ApiPath<String>) -> ApiResult<JobSummary> {
    Ok(Json(shared.mutate(|c, now| c.cancel(&id, now))?))
}

/// `POST /api/v1/jobs/{id}/savepoint`.
pub(crate) async fn savepoint(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SavepointRequest>,
) -> ApiResult<SavepointInfo> {
    let request = shared.mutate(|c, now| c.savepoint(&id, req.dir, false, now))?;
    Ok(Json(await_savepoint(&shared, request).await?))
}

/// `POST /api/v1/jobs/{id}/stop`.
pub(crate) async fn stop(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SavepointRequest>,
) -> ApiResult<SavepointInfo> {
    let request = shared.mutate(|c, now| c.savepoint(&id, req.dir, true, now))?;
    Ok(Json(await_savepoint(&shared, request).await?))
}

/// `POST /api/v1/jobs/{id}/resume`.
pub(crate) async fn resume(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ResumeRequest>,
) -> ApiResult<JobSummary> {
    if let Some(sp) = &req.savepoint {
        check_savepoint(sp)?;
    }
    Ok(Json(
        shared.mutate(|c, now| c.resume(&id, req.savepoint, req.parallelism, now))?,
    ))
}

/// `POST /api/v1/jobs/{id}/rescale`: stop with a savepoint, then resume at the new
/// parallelism.
pub(crate) async fn rescale(
    State(shared): State<Arc<Shared>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<RescaleRequest>,
) -> ApiResult<JobSummary> {
    Cluster::check_parallelism(req.parallelism)?;
    let state = shared.inspect(|c| c.job(&id).map(|j| j.state))?;
    if state != JobState::Running {
        return Err(ApiFailure::new(
            StatusCode::CONFLICT,
            format!("job {id} is {}: only a running job can be rescaled", state.as_str()),
        ));
    }
    let request = shared.mutate(|c, now| c.savepoint(&id, None, true, now))?;
    let info = await_savepoint(&shared, request).await?;
    tracing::info!(job = %id, savepoint = %info.dir, parallelism = req.parallelism, "rescaling");
    Ok(Json(shared.mutate(|c, now| {
        c.resume(&id, Some(info.dir), Some(req.parallelism), now)
    })?))
}

/// Waits for the answer to a savepoint request.
async fn await_savepoint(shared: &Shared, request: u64) -> Result<SavepointInfo, ApiFailure> {
    let limit = shared.inspect(|c| Duration::from_millis(c.config.savepoint_timeout_ms));
    let answer = shared
        .wait_for(limit + SAVEPOINT_SLACK, |c| c.savepoint_result(request))
        .await;
    match answer {
        Some(Ok(info)) => Ok(info),
        Some(Err(failure)) if failure.timed_out => Err(ApiFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{}; the job keeps running", failure.message),
        )),
        Some(Err(failure)) => Err(ApiFailure::new(
            StatusCode::CONFLICT,
            format!("the savepoint was not taken: {}", failure.message),
        )),
        None => Err(ApiFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the job manager is shutting down or the savepoint took too long: look at the job's state",
        )),
    }
}
