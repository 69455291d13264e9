//! Child processes of tests: killed when the test ends or panics, the `floe` binary found
//! next to the test's own, and whether a process id is still a live process.

use std::path::{Path, PathBuf};
use std::process::Child;

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    /// The process id, as the `kill` command takes it.
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// Kills it now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `floe` binary of this build (`target/<profile>/floe`, next to the directory of the
/// running test binary). `cargo test --workspace` builds it; so does any test of
/// `floe-dsl`.
pub fn floe_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/floe
    let profile_dir = exe.parent().and_then(Path::parent).expect("a test binary in target/<profile>/deps");
    let floe = profile_dir.join("floe");
    assert!(
        floe.exists(),
        "{} is missing: build it with `cargo build -p floe-dsl --bin floe` (cargo test --workspace does)",
        floe.display()
    );
    floe
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::{wait_until, DEADLINE};
    use std::process::Command;

    #[test]
    fn a_dropped_proc_is_killed_and_reaped() {
        let p = Proc(Command::new("sleep").arg("600").spawn().unwrap());
        let pid = p.pid();
        assert!(alive(&pid));
        drop(p);
        wait_until("the process to be gone", DEADLINE, || !alive(&pid));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id().to_string();
        // Not reaped yet: a zombie once it has exited.
        wait_until("the process to exit", DEADLINE, || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
        assert!(!alive(&pid));
        child.wait().unwrap();
        assert!(!alive(&pid));
    }
}
