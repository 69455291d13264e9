//! The bearer token: given, read from `<data-dir>/token`, or made up and written there with
//! mode 0600; compared in constant time. The credentials of workers, derived from it per
//! attempt. Also random ids (from `/dev/urandom`).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{ClusterError, Result};

/// Where the token came from, for the startup message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `--token` or `FLOE_TOKEN`.
    Given,
    /// The token file, read or just written.
    File(std::path::PathBuf),
}

/// The token to require: `given` if set, else the token file's content, else a new random
/// token written to the token file (mode 0600).
pub(crate) fn load_or_create(data_dir: &Path, given: Option<&str>) -> Result<(String, TokenSource)> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((token.to_string(), TokenSource::Given));
    }
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(content) if !content.trim().is_empty() => {
            return Ok((content.trim().to_string(), TokenSource::File(path)));
        }
        Ok(_) => {
            return Err(ClusterError::Config(format!(
                "token file {} is empty: delete it to have a new token made, or pass --token",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ClusterError::io(format!("reading token file {}", path.display()), e)),
    }
    let token = random_hex(32)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| ClusterError::io(format!("creating token file {}", path.display()), e))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| ClusterError::io(format!("writing token file {}", path.display()), e))?;
    Ok((token, TokenSource::File(path)))
}

/// `n` random bytes from `/dev/urandom`, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ClusterError::io("reading /dev/urandom", e))?;
    Ok(hex::encode(bytes))
}

/// Whether `given` is the token, in time independent of where they differ (both are hashed
/// first, so their lengths do not show either).
pub(crate) fn tokens_equal(given: &str, token: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The credential of the workers of attempt `attempt`: an HMAC-SHA256 of the attempt id
/// keyed by the job manager's token. Workers get this rather than the token: it opens only
/// their attempt's endpoints (see [`attempt_of`]), and the token cannot be worked out from
/// it. Derived rather than stored, so it is the same after the job manager restarts and
/// running workers go on reporting.
pub(crate) fn attempt_token(token: &str, attempt: u64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(token.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(b"floe worker credential, attempt ");
    mac.update(attempt.to_string().as_bytes());
    format!("w.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The attempt whose worker endpoints `path` is (`/api/v1/attempts/{attempt}/...`), if it is
/// one: the only paths an attempt's credential opens.
pub(crate) fn attempt_of(path: &str) -> Option<u64> {
    let rest = path.strip_prefix("/api/v1/attempts/")?;
    let (attempt, endpoint) = rest.split_once('/')?;
    let known = endpoint == "peers"
        || endpoint == "events"
        || endpoint == "commands"
        || endpoint
            .strip_prefix("workers/")
            .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()));
    if !known || attempt.is_empty() || !attempt.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    attempt.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn makes_a_private_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) = load_or_create(dir.path(), None).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(source, TokenSource::File(dir.path().join("token")));
        let mode = std::fs::metadata(dir.path().join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = load_or_create(dir.path(), None).unwrap();
        assert_eq!(again, token);
        let (given, source) = load_or_create(dir.path(), Some("s3cret")).unwrap();
        assert_eq!((given.as_str(), source), ("s3cret", TokenSource::Given));
    }

    #[test]
    fn compares_tokens() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abd", "abc"));
        assert!(!tokens_equal("", "abc"));
    }

    #[test]
    fn attempt_credentials_open_their_attempt_only() {
        let a = attempt_token("admin", 7);
        assert_eq!(a, attempt_token("admin", 7), "the same after a restart");
        assert_ne!(a, attempt_token("admin", 8), "another attempt");
        assert_ne!(a, attempt_token("other", 7), "another job manager");
        assert!(!a.contains("admin"));
        assert_eq!(attempt_of("/api/v1/attempts/7/events"), Some(7));
        assert_eq!(attempt_of("/api/v1/attempts/7/peers"), Some(7));
        assert_eq!(attempt_of("/api/v1/attempts/7/commands"), Some(7));
        assert_eq!(attempt_of("/api/v1/attempts/7/workers/1"), Some(7));
        for other in [
            "/api/v1/jobs/j-1/cancel",
            "/api/v1/attempts/7",
            "/api/v1/attempts/7/",
            "/api/v1/attempts/7/workers/",
            "/api/v1/attempts/7/workers/1/x",
            "/api/v1/attempts/x7/events",
            "/api/v1/attempts/+7/events",
            "/api/v1/attempts/99999999999999999999999/events",
            "/api/v1/artifacts/00",
            "/metrics",
        ] {
            assert_eq!(attempt_of(other), None, "{other}");
        }
    }
}
