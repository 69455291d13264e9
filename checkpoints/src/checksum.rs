//! Checksums of checkpoint files: xxh3-64 over the whole contents, computed from bytes in
//! memory or streamed from a file in fixed-size chunks (an SST of any size costs one buffer).
//! FNV-1a 64 is kept only to read checkpoints written before manifest version 2.

use std::hash::Hasher as _;
use std::io::Read as _;
use std::path::Path;

use twox_hash::XxHash3_64;

/// Bytes read per call when checksumming a file.
const CHUNK: usize = 1 << 20;

/// The xxh3-64 checksum of `bytes`.
pub(crate) fn of_bytes(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

/// The size and xxh3-64 checksum of the file at `path`, read in chunks.
pub(crate) fn of_file(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = XxHash3_64::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.write(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finish()))
}

/// FNV-1a 64 of `bytes`: the checksum of state files in manifests of version 1.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_file_sums_like_its_bytes_and_any_flipped_bit_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Longer than one chunk, not a multiple of it.
        let bytes: Vec<u8> = (0..(CHUNK * 2 + 12_345)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (len, sum) = of_file(&path).unwrap();
        assert_eq!((len, sum), (bytes.len() as u64, of_bytes(&bytes)));
        for at in [0, CHUNK - 1, CHUNK, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert_ne!(of_bytes(&flipped), sum, "bit flipped at {at}");
        }
        assert!(of_file(&dir.path().join("missing")).is_err());
    }
}
