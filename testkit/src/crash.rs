//! Crash tests: what a job's runs leave in its checkpoint directory, kills timed against
//! it rather than against the clock alone, and the seeded randomness that picks the moments.
//!
//! A kill at "200 ms after start" lands wherever a loaded machine happens to have got to:
//! often before the first checkpoint, so ten such kills can test nothing but start-up. A
//! kill at a random moment after the run completed a checkpoint of its own lands where the
//! test means it to (between checkpoints, in a snapshot, in a commit), whatever the load.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::wait::DEADLINE;

/// The directories of the complete checkpoints (those with a manifest) in `dir`, oldest
/// first.
pub fn complete_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("_manifest.json").exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The ids of the complete checkpoints (`chk-<id>` with a manifest) in `dir`, oldest first.
pub fn checkpoint_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = complete_checkpoints(dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The id of the newest complete checkpoint in `dir` (0 if none): the one a restart must
/// restore.
pub fn newest_checkpoint(dir: &Path) -> u64 {
    checkpoint_ids(dir).last().copied().unwrap_or(0)
}

/// When a run is killed.
#[derive(Clone, Copy, Debug)]
pub enum KillMoment<'a> {
    /// This long after it was started: anywhere in its life, start-up and restore
    /// included.
    AfterStart(Duration),
    /// This long after a checkpoint newer than `newer_than` (what the runs before left)
    /// completed in `dir`: the run restored, ran and checkpointed before it dies.
    AfterCheckpoint {
        /// The job's checkpoint directory.
        dir: &'a Path,
        /// The newest checkpoint when the run started.
        newer_than: u64,
        /// How long after that checkpoint.
        after: Duration,
    },
}

impl<'a> KillMoment<'a> {
    /// The moment of kill number `kill` (from 1) of a crash test whose job checkpoints into
    /// `dir`: odd kills a random `after_checkpoint` (ms) after the run completed a checkpoint
    /// of its own, even ones a random `after_start` (ms) after its start (start-up and
    /// restore included).
    pub fn alternating(
        kill: usize,
        dir: &'a Path,
        rng: &mut TestRng,
        after_checkpoint: std::ops::RangeInclusive<u64>,
        after_start: std::ops::RangeInclusive<u64>,
    ) -> Self {
        if kill % 2 == 1 {
            KillMoment::AfterCheckpoint {
                dir,
                newer_than: newest_checkpoint(dir),
                after: rng.millis(*after_checkpoint.start(), *after_checkpoint.end()),
            }
        } else {
            KillMoment::AfterStart(rng.millis(*after_start.start(), *after_start.end()))
        }
    }
}

/// Kills `child` with SIGKILL at `moment` and reaps it; `false` if it ended on its own
/// first. Panics if a checkpoint awaited does not come within [`DEADLINE`].
pub fn kill_at(mut child: Child, moment: KillMoment<'_>) -> bool {
    let started = Instant::now();
    let after = match moment {
        KillMoment::AfterStart(after) => after,
        KillMoment::AfterCheckpoint { dir, newer_than, after } => {
            loop {
                if child.try_wait().expect("the run's status").is_some() {
                    return false;
                }
                if newest_checkpoint(dir) > newer_than {
                    break;
                }
                assert!(
                    started.elapsed() < DEADLINE,
                    "no checkpoint newer than {newer_than} in {} within {DEADLINE:?}",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            after
        }
    };
    let until = Instant::now() + after;
    // The random moment of the kill: time is the point here, not a synchronization.
    while Instant::now() < until {
        if child.try_wait().expect("the run's status").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    true
}

/// A small seeded random source for choosing moments; prints its seed, and takes it from
/// `FLOE_TEST_SEED` when set, so that a failing run can be repeated.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// Seeded from `FLOE_TEST_SEED`, or else from the clock.
    pub fn from_env_or_time() -> TestRng {
        Self::from_env("FLOE_TEST_SEED", "this test")
    }

    /// Seeded from the environment variable `var` (kill campaigns: `FLOE_CAMPAIGN_SEED`), or
    /// else from the clock; prints the seed under `what`.
    pub fn from_env(var: &str, what: &str) -> TestRng {
        let seed = std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        println!("{what}: seed {seed} ({var}={seed} repeats it)");
        TestRng(seed)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }

    /// A duration between `min_ms` and `max_ms` milliseconds (both included).
    pub fn millis(&mut self, min_ms: u64, max_ms: u64) -> Duration {
        Duration::from_millis(min_ms + self.below(max_ms.saturating_sub(min_ms) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn checkpoint(dir: &Path, id: u64, complete: bool) {
        let c = dir.join(format!("chk-{id:010}"));
        std::fs::create_dir_all(&c).unwrap();
        if complete {
            std::fs::write(c.join("_manifest.json"), "{}").unwrap();
        }
    }

    #[test]
    fn only_checkpoints_with_a_manifest_count() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_checkpoint(dir.path()), 0);
        checkpoint(dir.path(), 2, true);
        checkpoint(dir.path(), 3, false);
        assert_eq!(newest_checkpoint(dir.path()), 2);
        checkpoint(dir.path(), 11, true);
        assert_eq!(newest_checkpoint(dir.path()), 11);
        assert_eq!(complete_checkpoints(dir.path()).len(), 2);
    }

    #[test]
    fn a_kill_after_a_checkpoint_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        checkpoint(dir.path(), 1, true);
        // A "run" that completes checkpoint 2 after a while and then lives on.
        let script = format!(
            "sleep 0.3; mkdir -p {d}/chk-0000000002; echo '{{}}' > {d}/chk-0000000002/_manifest.json; exec sleep 600",
            d = dir.path().display()
        );
        let child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
        let moment = KillMoment::AfterCheckpoint {
            dir: dir.path(),
            newer_than: 1,
            after: Duration::ZERO,
        };
        assert!(kill_at(child, moment));
        assert_eq!(
            newest_checkpoint(dir.path()),
            2,
            "killed only once checkpoint 2 was there"
        );
    }

    #[test]
    fn a_run_that_ends_first_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("true").spawn().unwrap();
        let moment = KillMoment::AfterCheckpoint {
            dir: dir.path(),
            newer_than: 0,
            after: Duration::ZERO,
        };
        assert!(!kill_at(child, moment));
        let child = Command::new("true").spawn().unwrap();
        assert!(!kill_at(child, KillMoment::AfterStart(DEADLINE)));
    }

    #[test]
    fn the_same_seed_gives_the_same_moments() {
        let (mut a, mut b) = (TestRng(7), TestRng(7));
        let (xs, ys): (Vec<_>, Vec<_>) = (0..20).map(|_| (a.millis(200, 700), b.millis(200, 700))).unzip();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|d| (200..=700).contains(&(d.as_millis() as u64))));
        assert!(xs.iter().any(|d| *d != xs[0]), "not constant: {xs:?}");
    }
}
