//! Job binaries: `POST /api/v1/artifacts` streams the body to a temporary file in
//! `artifacts/` while hashing it, then renames it to its sha256 (the only name a stored file
//! ever gets); `GET /api/v1/artifacts/{sha256}` streams one back to a task manager.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::{ArtifactInfo, NAME_HEADER};

use super::api::{ApiFailure, ApiPath, ApiResult};
use super::shared::Shared;
use super::store::{sanitize_name, temp_path};

/// Bytes read past the limit (and thrown away) so that the client gets to read the 413
/// instead of a reset connection; a longer body is cut off.
const DRAIN_PAST_LIMIT: u64 = 64 << 20;

/// `POST /api/v1/artifacts`.
pub(crate) async fn upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ArtifactInfo> {
    let limit = shared.max_upload_bytes;
    let too_large = || {
        ApiFailure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "artifact is larger than the limit of {} MB: raise --max-upload-mb on the job manager",
                limit >> 20
            ),
        )
    };
    let name = headers
        .get(NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(sanitize_name);
    let dir = shared.store.artifacts_dir();
    let tmp = temp_path(&dir, "upload");
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&tmp)
        .await
        .map_err(|e| ApiFailure::internal(format!("cannot store the artifact: {e}")))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = body;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                failure.get_or_insert(ApiFailure::bad_request(format!("upload interrupted: {e}")));
                break;
            }
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        size += chunk.len() as u64;
        if size > limit {
            failure.get_or_insert_with(too_large);
            if size > limit.saturating_add(DRAIN_PAST_LIMIT) {
                break;
            }
            continue;
        }
        hasher.update(&chunk);
        if let Err(e) = file.write_all(&chunk).await {
            failure.get_or_insert(ApiFailure::internal(format!("cannot store the artifact: {e}")));
        }
    }
    let synced = file.sync_all().await;
    drop(file);
    if let Some(failure) = failure {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(failure);
    }
    if let Err(e) = synced {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiFailure::internal(format!("cannot store the artifact: {e}")));
    }
    let sha256 = hex::encode(hasher.finalize());
    let path = dir.join(&sha256);
    let stored = async {
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).await?;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = stored {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ApiFailure::internal(format!("cannot store the artifact: {e}")));
    }
    if let Some(name) = &name {
        shared.mutate(|c, _| c.name_artifact(&sha256, name));
    }
    let name = name.or_else(|| shared.inspect(|c| c.artifact_name(&sha256)));
    tracing::info!(%sha256, size, ?name, "artifact stored");
    Ok(Json(ArtifactInfo { sha256, size, name }))
}

/// `GET /api/v1/artifacts/{sha256}`.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    ApiPath(sha256): ApiPath<String>,
) -> Result<Response, ApiFailure> {
    let path = shared
        .store
        .artifact_path(&sha256)
        .ok_or_else(|| ApiFailure::bad_request(format!("{sha256:?} is not a sha256: give 64 lowercase hex digits")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiFailure::not_found(format!("unknown artifact {sha256}: upload it first")))?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    let stream = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = size {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(size));
    }
    Ok(response)
}
