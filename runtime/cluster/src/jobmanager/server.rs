//! The router: which path goes to which handler, the bearer-token check in front of all but
//! the health check and the web page, JSON answers for unknown routes and wrong methods,
//! and the background task that drives timeouts and restarts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::api::ApiFailure;
use super::shared::Shared;
use super::token::{attempt_of, attempt_token, tokens_equal};
use super::{artifacts, internal, jobs_api};

/// How often timeouts, due restarts and scheduling are checked.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Largest JSON body accepted (worker events carry Prometheus text).
const JSON_LIMIT: usize = 16 << 20;

/// The job manager's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/api/v1/artifacts", post(artifacts::upload))
        .route("/api/v1/artifacts/{sha256}", get(artifacts::download))
        .route("/api/v1/jobs", get(jobs_api::list_jobs).post(jobs_api::submit))
        .route("/api/v1/jobs/{id}", get(jobs_api::job_detail))
        .route("/api/v1/jobs/{id}/cancel", post(jobs_api::cancel))
        .route("/api/v1/jobs/{id}/savepoint", post(jobs_api::savepoint))
        .route("/api/v1/jobs/{id}/stop", post(jobs_api::stop))
        .route("/api/v1/jobs/{id}/resume", post(jobs_api::resume))
        .route("/api/v1/jobs/{id}/rescale", post(jobs_api::rescale))
        .route(
            "/api/v1/taskmanagers",
            get(jobs_api::list_task_managers).post(internal::register),
        )
        .route("/api/v1/taskmanagers/{tm}/heartbeat", post(internal::heartbeat))
        .route("/api/v1/attempts/{attempt}/workers/{worker}", post(internal::hello))
        .route("/api/v1/attempts/{attempt}/peers", get(internal::peers))
        .route("/api/v1/attempts/{attempt}/events", post(internal::events))
        .route("/api/v1/attempts/{attempt}/commands", get(internal::commands))
        .route("/metrics", get(jobs_api::metrics))
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_token))
        // JSON bodies (uploads stream past this with their own limit).
        .layer(DefaultBodyLimit::max(JSON_LIMIT));
    Router::new()
        .route("/", get(jobs_api::index))
        .route("/api/v1/health", get(jobs_api::health))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .with_state(shared)
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: pass --token or set FLOE_TOKEN",
        )
        .into_response(),
        Some(token) if tokens_equal(token, &shared.token) => next.run(req).await,
        // A worker's credential, on its own attempt's endpoints.
        Some(token)
            if attempt_of(req.uri().path())
                .is_some_and(|attempt| tokens_equal(token, &attempt_token(&shared.token, attempt))) =>
        {
            next.run(req).await
        }
        Some(_) => ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "wrong token (a worker's credential opens only its own attempt's endpoints)",
        )
        .into_response(),
    }
}

async fn not_found(req: Request) -> ApiFailure {
    ApiFailure::not_found(format!(
        "no such endpoint: {} {} (the API is under /api/v1)",
        req.method(),
        req.uri().path()
    ))
}

async fn wrong_method(req: Request) -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Drives the state machine's clock until the job manager shuts down.
pub(crate) async fn tick_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = super::shared::now_ms();
        let (changed, stop) = shared.inspect(|c| (c.tick(now), c.shutting_down));
        if changed {
            shared.notify();
        }
        if stop {
            return;
        }
    }
}
