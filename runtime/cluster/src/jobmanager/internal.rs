//! The handlers task managers and workers call: registration and heartbeats (long poll),
//! hellos and the peer list (long poll), events, and worker 0's commands (long poll).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;

use crate::protocol::{
    Heartbeat, HeartbeatResponse, Peers, RegisterRequest, RegisterResponse, Secret, TmCommand, WorkerCommand,
    WorkerEvent, WorkerHello,
};

use super::api::{ApiFailure, ApiJson, ApiPath, ApiQuery, ApiResult, WaitQuery};
use super::shared::{poll_wait, Shared};
use super::token::{attempt_token, random_hex};

/// `POST /api/v1/taskmanagers`.
pub(crate) async fn register(
    State(shared): State<Arc<Shared>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<RegisterResponse> {
    let id = format!("tm-{}", random_hex(8).map_err(|e| ApiFailure::internal(e.to_string()))?);
    let (host, slots) = (req.host.clone(), req.slots);
    let answer = shared.mutate(|c, now| c.register(id, req, now))?;
    tracing::info!(tm = %answer.id, %host, slots, "task manager registered");
    Ok(Json(answer))
}

/// `POST /api/v1/taskmanagers/{tm}/heartbeat`: held until there are commands, for at most
/// `wait_ms` (and a third of the heartbeat timeout, so that a held heartbeat never looks
/// like a lost task manager).
pub(crate) async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    ApiPath(tm): ApiPath<String>,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> ApiResult<HeartbeatResponse> {
    let unknown = || {
        Json(HeartbeatResponse {
            commands: Vec::new(),
            unknown: true,
        })
    };
    if !shared.mutate(|c, now| c.heartbeat(&tm, &hb, now)) {
        return Ok(unknown());
    }
    let timeout = shared.inspect(|c| c.config.heartbeat_timeout_ms);
    let hold = poll_wait(Some(hb.wait_ms)).min(Duration::from_millis(timeout / 3));
    let commands = shared
        .wait_for(hold, |c| c.tm_has_commands(&tm).then(|| c.take_tm_commands(&tm)))
        .await
        .unwrap_or_else(|| shared.inspect(|c| c.take_tm_commands(&tm)));
    Ok(match commands {
        Some(mut commands) => {
            for c in &mut commands {
                if let TmCommand::Deploy { spec } = c {
                    spec.token = Secret(attempt_token(&shared.token, spec.attempt));
                }
            }
            Json(HeartbeatResponse {
                commands,
                unknown: false,
            })
        }
        None => unknown(),
    })
}

/// `POST /api/v1/attempts/{attempt}/workers/{worker}`.
pub(crate) async fn hello(
    State(shared): State<Arc<Shared>>,
    ApiPath((attempt, worker)): ApiPath<(u64, usize)>,
    ApiJson(hello): ApiJson<WorkerHello>,
) -> ApiResult<serde_json::Value> {
    shared.mutate(|c, _| c.hello(attempt, worker, hello.addr))?;
    Ok(Json(serde_json::json!({})))
}

/// `GET /api/v1/attempts/{attempt}/peers?wait_ms=N`.
pub(crate) async fn peers(
    State(shared): State<Arc<Shared>>,
    ApiPath(attempt): ApiPath<u64>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> ApiResult<Peers> {
    let answer = shared.wait_for(poll_wait(query.wait_ms), |c| c.peers(attempt)).await;
    Ok(Json(answer.unwrap_or(Peers {
        addrs: None,
        cancelled: false,
    })))
}

/// `POST /api/v1/attempts/{attempt}/events`.
pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    ApiPath(attempt): ApiPath<u64>,
    ApiJson(events): ApiJson<Vec<WorkerEvent>>,
) -> ApiResult<serde_json::Value> {
    shared.mutate(|c, now| c.events(attempt, events, now))?;
    Ok(Json(serde_json::json!({})))
}

/// `GET /api/v1/attempts/{attempt}/commands?wait_ms=N`.
pub(crate) async fn commands(
    State(shared): State<Arc<Shared>>,
    ApiPath(attempt): ApiPath<u64>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> ApiResult<Vec<WorkerCommand>> {
    shared
        .wait_for(poll_wait(query.wait_ms), |c| {
            c.worker_commands_ready(attempt).then_some(())
        })
        .await;
    Ok(Json(shared.inspect(|c| c.take_worker_commands(attempt))?))
}
