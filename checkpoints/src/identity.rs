//! Whether a checkpoint belongs to the job restoring it, and which operator restores which
//! state: operators are matched by stable id (Flink's operator uid), so a job whose operators
//! moved in the graph still finds its state.
//!
//! Like Flink: a checkpoint of another job (by name) is refused; state of an operator the
//! job no longer has is refused unless dropping it is allowed (`allow_non_restored_state`);
//! an operator of the checkpoint without state, or an operator of the job without state in
//! the checkpoint, is fine (the latter starts empty).

use std::collections::HashMap;

use crate::error::{Result, StateError};
use crate::manifest::{Manifest, OperatorIdentity};

/// Which state each operator of a job restores from a checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateAssignment {
    /// For each node of the job, the node of the checkpoint whose state it restores.
    pub restores: Vec<Option<usize>>,
    /// Operators of the checkpoint with state that no operator of the job takes (dropped,
    /// as allowed).
    pub dropped: Vec<OperatorIdentity>,
    /// Operators of the job that the checkpoint has nothing for (they start empty).
    pub fresh: Vec<OperatorIdentity>,
}

/// Matches the operators of `manifest` to those of job `job` (by node); `has_state(node)`
/// says whether a node of the checkpoint holds any state. The error says every difference.
pub fn assign_state(
    manifest: &Manifest,
    location: &str,
    job: &str,
    operators: &[OperatorIdentity],
    has_state: impl Fn(usize) -> bool,
    allow_non_restored_state: bool,
) -> Result<StateAssignment> {
    let refuse = |differences: Vec<String>| StateError::ForeignCheckpoint {
        location: location.to_string(),
        checkpoint: manifest.checkpoint_id,
        differences,
    };
    let mut differences = Vec::new();
    if manifest.job != job {
        differences.push(format!("it was taken by job `{}`, this job is `{job}`", manifest.job));
    }
    if manifest.operators.is_empty() {
        // Written before operators had ids: by position, and the count must match.
        let old = manifest.parallelism.len();
        if old != operators.len() {
            differences.push(format!(
                "it has {old} operators and this job {} (it predates operator ids, so operators are matched by position)",
                operators.len()
            ));
        }
        if !differences.is_empty() {
            return Err(refuse(differences));
        }
        return Ok(StateAssignment {
            restores: (0..operators.len()).map(Some).collect(),
            ..StateAssignment::default()
        });
    }
    let old: HashMap<&str, usize> = manifest
        .operators
        .iter()
        .enumerate()
        .map(|(node, o)| (o.uid.as_str(), node))
        .collect();
    let restores: Vec<Option<usize>> = operators.iter().map(|o| old.get(o.uid.as_str()).copied()).collect();
    let fresh: Vec<OperatorIdentity> = operators
        .iter()
        .zip(&restores)
        .filter(|(_, r)| r.is_none())
        .map(|(o, _)| o.clone())
        .collect();
    let mut taken = vec![false; manifest.operators.len()];
    for node in restores.iter().flatten() {
        taken[*node] = true;
    }
    let orphaned: Vec<OperatorIdentity> = manifest
        .operators
        .iter()
        .enumerate()
        .filter(|(node, _)| !taken[*node] && has_state(*node))
        .map(|(_, o)| o.clone())
        .collect();
    if !orphaned.is_empty() && !allow_non_restored_state {
        differences.push(format!(
            "it holds state of operators this job does not have: {}",
            list(&orphaned)
        ));
        if !fresh.is_empty() {
            differences.push(format!(
                "this job has operators the checkpoint does not: {}",
                list(&fresh)
            ));
        }
    }
    if !differences.is_empty() {
        return Err(refuse(differences));
    }
    Ok(StateAssignment {
        restores,
        dropped: orphaned,
        fresh,
    })
}

fn list(operators: &[OperatorIdentity]) -> String {
    operators.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(uid: &str, name: &str) -> OperatorIdentity {
        OperatorIdentity {
            uid: uid.into(),
            name: name.into(),
        }
    }

    fn taken_by(job: &str, ops: &[OperatorIdentity]) -> Manifest {
        Manifest {
            job: job.into(),
            checkpoint_id: 7,
            parallelism: vec![1; ops.len()],
            operators: ops.to_vec(),
            ..Manifest::default()
        }
    }

    fn job_ops() -> Vec<OperatorIdentity> {
        vec![op("src", "source"), op("cnt", "count"), op("out", "sink")]
    }

    #[test]
    fn the_same_job_restores_each_operator_from_its_own_state_wherever_it_moved() {
        let same = assign_state(&taken_by("j", &job_ops()), "d", "j", &job_ops(), |_| true, false).unwrap();
        assert_eq!(same.restores, vec![Some(0), Some(1), Some(2)]);
        // An operator inserted before `count` moves it; uids still find its state.
        let moved = vec![
            op("src", "source"),
            op("new", "filter"),
            op("cnt", "count"),
            op("out", "sink"),
        ];
        let a = assign_state(&taken_by("j", &job_ops()), "d", "j", &moved, |_| true, false).unwrap();
        assert_eq!(a.restores, vec![Some(0), None, Some(1), Some(2)]);
        assert_eq!(a.fresh, vec![op("new", "filter")]);
        assert!(a.dropped.is_empty());
    }

    #[test]
    fn another_job_is_refused_saying_what_differs() {
        let e = assign_state(&taken_by("other", &job_ops()), "/chk", "j", &job_ops(), |_| true, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/chk") && e.contains("checkpoint 7") && e.contains("taken by job `other`, this job is `j`"),
            "{e}"
        );
    }

    #[test]
    fn state_of_a_missing_operator_is_refused_unless_dropping_it_is_allowed() {
        let ops = vec![op("src", "source"), op("cnt2", "count v2"), op("out", "sink")];
        let m = taken_by("j", &job_ops());
        let e = assign_state(&m, "/chk", "j", &ops, |_| true, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("state of operators this job does not have: `count` (uid cnt)")
                && e.contains("operators the checkpoint does not: `count v2` (uid cnt2)"),
            "{e}"
        );
        let a = assign_state(&m, "/chk", "j", &ops, |_| true, true).unwrap();
        assert_eq!(a.restores, vec![Some(0), None, Some(2)]);
        assert_eq!(a.dropped, vec![op("cnt", "count")]);
        // Without state there is nothing to lose: no flag needed.
        let a = assign_state(&m, "/chk", "j", &ops, |node| node != 1, false).unwrap();
        assert!(a.dropped.is_empty());
    }

    #[test]
    fn manifests_without_operator_ids_match_by_position() {
        let m = Manifest {
            operators: Vec::new(),
            ..taken_by("j", &job_ops())
        };
        let a = assign_state(&m, "d", "j", &job_ops(), |_| true, false).unwrap();
        assert_eq!(a.restores, vec![Some(0), Some(1), Some(2)]);
        let e = assign_state(&m, "d", "j", &job_ops()[..2], |_| true, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it has 3 operators and this job 2"), "{e}");
    }
}
