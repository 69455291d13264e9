//! What a completed checkpoint consists of (`_manifest.json`, written last): the job and
//! its operators by stable id, every state file and every shared file it references, each
//! with its size and checksum.
//!
//! Versions: 1 (before checksums of shared files and operator ids) had FNV-1a checksums of
//! state files and sizes of shared files; 2 has xxh3-64 checksums of both, and the operators.
//! Version 1 manifests are still read (checked as far as they allow); newer versions than
//! this build knows are refused with an error that says so.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};

/// The manifest version this build writes.
pub const MANIFEST_VERSION: u32 = 2;

fn version_1() -> u32 {
    1
}

/// An operator as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OperatorIdentity {
    /// Its stable id: set by the user, or derived from its position in the graph.
    /// State is matched to operators by it on restore.
    pub uid: String,
    /// Its name (for messages).
    pub name: String,
}

impl OperatorIdentity {
    /// The identity of the operator named `name` at `position` in its graph: `uid` if one
    /// was set, else one derived from the position alone (a hash of it, as hex), as Flink
    /// derives operator ids from the topology. Names are left out: they are for people and
    /// often carry paths or topics that change between runs (a job resumed into another
    /// output directory is the same job). Moving an operator without a uid (an operator
    /// added before it) loses the way to its state: set uids on stateful operators of jobs
    /// that will change.
    ///
    /// ```
    /// use floe_checkpoints::OperatorIdentity;
    /// let set = OperatorIdentity::new(Some("dedup"), "filter", 3);
    /// assert_eq!((set.uid.as_str(), set.name.as_str()), ("dedup", "filter"));
    /// let derived = OperatorIdentity::new(None, "write: out/", 3);
    /// assert_eq!(derived.uid, OperatorIdentity::new(None, "write: elsewhere/", 3).uid);
    /// assert_ne!(derived.uid, OperatorIdentity::new(None, "write: out/", 4).uid);
    /// ```
    pub fn new(uid: Option<&str>, name: &str, position: usize) -> Self {
        let uid = match uid {
            Some(uid) => uid.to_string(),
            None => format!(
                "{:016x}",
                crate::checksum::of_bytes(format!("operator at position {position}").as_bytes())
            ),
        };
        OperatorIdentity {
            uid,
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for OperatorIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (uid {})", self.name, self.uid)
    }
}

/// One state file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Graph node (operator) the state belongs to.
    pub node: usize,
    /// Subtask index.
    pub subtask: usize,
    /// File name inside the checkpoint directory.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Checksum of the contents: xxh3-64 (FNV-1a 64 in version 1 manifests).
    pub checksum: u64,
    /// Shared files (SSTs) the state references.
    #[serde(default)]
    pub shared: Vec<SharedFile>,
    /// Bytes this checkpoint wrote for the state: the state file and the shared files it was
    /// the first to upload.
    #[serde(default)]
    pub uploaded: u64,
}

/// A file in the shared directory that a state file references.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    /// Name in the shared directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the contents (none in version 1 manifests, where only the size is known).
    /// Always written, even when none: workers send shared files to each other in bincode,
    /// which cannot skip a field.
    #[serde(default)]
    pub checksum: Option<u64>,
}

/// What a completed checkpoint consists of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_VERSION`] when written by this build; 1 when absent).
    #[serde(default = "version_1")]
    pub version: u32,
    /// Name of the job.
    pub job: String,
    /// Checkpoint id.
    pub checkpoint_id: u64,
    /// When it was triggered (ms since the epoch).
    pub timestamp: i64,
    /// Whether the user asked for it.
    pub is_savepoint: bool,
    /// Parallelism of every node when it was taken, by node.
    pub parallelism: Vec<usize>,
    /// Every node's operator, by node (none in version 1 manifests, or when the writer did
    /// not say: operators are then matched by position).
    #[serde(default)]
    pub operators: Vec<OperatorIdentity>,
    /// Every state file.
    pub files: Vec<StateFile>,
}

impl Default for Manifest {
    /// An empty manifest of the current version.
    fn default() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            job: String::new(),
            checkpoint_id: 0,
            timestamp: 0,
            is_savepoint: false,
            parallelism: Vec::new(),
            operators: Vec::new(),
            files: Vec::new(),
        }
    }
}

impl Manifest {
    /// Total bytes of state, shared files included.
    pub fn size(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.bytes + f.shared.iter().map(|s| s.bytes).sum::<u64>())
            .sum()
    }

    /// Bytes this checkpoint uploaded (the rest it references from earlier ones).
    pub fn uploaded(&self) -> u64 {
        self.files.iter().map(|f| f.uploaded).sum()
    }

    /// The manifest in `bytes`, checked for what can be checked without the files: a version
    /// this build reads, operators (if any) for every node, a checksum for every file.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest> {
        let invalid = |what: String| StateError::Storage(format!("its manifest is invalid: {what}"));
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if m.version == 0 || m.version > MANIFEST_VERSION {
            return Err(invalid(format!(
                "version {} (this build of Floe reads versions 1 to {MANIFEST_VERSION}: restore with the Floe that wrote it, or a newer one)",
                m.version
            )));
        }
        if m.version >= 2 {
            if !m.operators.is_empty() && m.operators.len() != m.parallelism.len() {
                return Err(invalid(format!(
                    "{} operators for {} nodes",
                    m.operators.len(),
                    m.parallelism.len()
                )));
            }
            if let Some(s) = m.files.iter().flat_map(|f| &f.shared).find(|s| s.checksum.is_none()) {
                return Err(invalid(format!("shared file {} has no checksum", s.name)));
            }
        }
        if let Some(f) = m.files.iter().find(|f| f.node >= m.parallelism.len()) {
            return Err(invalid(format!(
                "{} belongs to node {} of {}",
                f.file,
                f.node,
                m.parallelism.len()
            )));
        }
        Ok(m)
    }

    /// The manifest as written: JSON of the current version.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        if self.version != MANIFEST_VERSION {
            return Err(StateError::Storage(format!(
                "a manifest of version {} cannot be written: this build writes version {MANIFEST_VERSION}",
                self.version
            )));
        }
        serde_json::to_vec_pretty(self).map_err(|e| StateError::Serialization(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            job: "j".into(),
            checkpoint_id: 3,
            parallelism: vec![2],
            operators: vec![OperatorIdentity {
                uid: "u".into(),
                name: "map".into(),
            }],
            files: vec![StateFile {
                node: 0,
                subtask: 1,
                file: "0-1.state".into(),
                bytes: 10,
                checksum: 7,
                shared: vec![SharedFile {
                    name: "db-1.sst".into(),
                    bytes: 100,
                    checksum: Some(9),
                }],
                uploaded: 110,
            }],
            ..Manifest::default()
        }
    }

    #[test]
    fn round_trips_at_the_current_version() {
        let m = manifest();
        assert_eq!(Manifest::parse(&m.to_json().unwrap()).unwrap(), m);
        let old = Manifest { version: 1, ..m };
        assert!(old.to_json().unwrap_err().to_string().contains("version 1"));
    }

    #[test]
    fn a_version_1_manifest_reads_with_sizes_only() {
        let v1 = r#"{"job":"j","checkpoint_id":4,"timestamp":0,"is_savepoint":false,"parallelism":[1],
            "files":[{"node":0,"subtask":0,"file":"0-0.state","bytes":5,"checksum":1,
            "shared":[{"name":"a.sst","bytes":9}]}]}"#;
        let m = Manifest::parse(v1.as_bytes()).unwrap();
        assert_eq!((m.version, m.operators.len()), (1, 0));
        assert_eq!(m.files[0].shared[0].checksum, None);
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        let check = |m: &Manifest, expected: &str| {
            let json = serde_json::to_vec(m).unwrap();
            let e = Manifest::parse(&json).unwrap_err().to_string();
            assert!(e.contains("manifest is invalid") && e.contains(expected), "{e}");
        };
        check(
            &Manifest {
                version: MANIFEST_VERSION + 1,
                ..manifest()
            },
            "this build of Floe reads versions 1 to 2",
        );
        let mut m = manifest();
        m.files[0].shared[0].checksum = None;
        check(&m, "shared file db-1.sst has no checksum");
        let mut m = manifest();
        m.operators.push(m.operators[0].clone());
        check(&m, "2 operators for 1 nodes");
        let mut m = manifest();
        m.files[0].node = 1;
        check(&m, "belongs to node 1 of 1");
        let json = manifest().to_json().unwrap();
        let e = Manifest::parse(&json[..json.len() / 2]).unwrap_err().to_string();
        assert!(e.contains("manifest is invalid"), "{e}");
    }
}
