//! HTTP plumbing shared by the handlers: the JSON error answer, and extractors whose
//! rejections are JSON [`ApiError`]s that say what serde (or the path or query parser)
//! objected to, instead of axum's plain-text errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::protocol::ApiError;

use super::cluster::Refusal;

/// An error answer: a status and an [`ApiError`].
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// The status.
    pub status: StatusCode,
    /// What is wrong.
    pub message: String,
}

impl ApiFailure {
    /// An answer with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiFailure {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<Refusal> for ApiFailure {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::BadRequest(m) => ApiFailure::bad_request(m),
            Refusal::NotFound(m) => ApiFailure::not_found(m),
            Refusal::Conflict(m) => ApiFailure::new(StatusCode::CONFLICT, m),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.status, Json(ApiError { error: self.message })).into_response()
    }
}

/// What handlers answer.
pub(crate) type ApiResult<T> = Result<Json<T>, ApiFailure>;

/// A JSON body. The content type is not checked; an empty body counts as `{}` (so optional
/// bodies may be left out).
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiFailure::new(e.status(), format!("cannot read the body: {}", e.body_text())))?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(ApiJson)
            .map_err(|e| ApiFailure::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Path parameters.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| ApiFailure::bad_request(format!("bad path: {}", e.body_text())))
    }
}

/// Query parameters.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiFailure::bad_request(format!("bad query: {}", e.body_text())))
    }
}

/// `?wait_ms=N` of the long polls.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct WaitQuery {
    /// How long to hold the answer.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}
