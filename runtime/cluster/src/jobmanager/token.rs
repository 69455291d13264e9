//! The bearer token: given, read from `<data-dir>/token`, or made up and written there with
//! mode 0600; compared in constant time. Also random ids (from `/dev/urandom`).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
}
