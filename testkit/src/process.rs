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
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary in target/<profile>/deps");
    let floe = profile_dir.join("floe");
    assert!(
        floe.exists(),
        "{} is missing: build it with `cargo build -p floe-dsl --bin floe` (cargo test --workspace does)",
        floe.display()
    );
    floe
}

/// Whether `pid` (a number, or its text as a pid file holds it) is a live process: not
/// gone, not a zombie waiting to be reaped.
pub fn alive(pid: impl std::fmt::Display) -> bool {
    stat(pid).is_some_and(|(_, state)| state != 'Z')
}

/// `(parent pid, state)` of `pid` from `/proc/<pid>/stat`, if it exists.
pub fn stat(pid: impl std::fmt::Display) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The live (not zombie) children of any of `parents`, as `(pid, parent)`, by a scan of
/// `/proc`.
pub fn children(parents: &[u32]) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match stat(pid)? {
            (ppid, state) if state != 'Z' && parents.contains(&ppid) => Some((pid, ppid)),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out
}

/// The command line of `pid`, one string per argument (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The value of the environment variable `name` that `pid` was started with, if it can be
/// read. Between fork and exec a child still has its parent's environment.
pub fn environ(pid: u32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{name}=");
    raw.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
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
    fn a_child_is_found_with_its_command_line_and_environment() {
        let p = Proc(
            Command::new("sleep")
                .arg("600")
                .env("FLOE_TESTKIT_PROBE", "seen")
                .spawn()
                .unwrap(),
        );
        let pid = p.0.id();
        let me = std::process::id();
        assert_eq!(stat(pid).map(|(ppid, _)| ppid), Some(me));
        assert!(children(&[me]).contains(&(pid, me)));
        assert!(!children(&[me + 1_000_000]).iter().any(|(c, _)| *c == pid));
        // Just after spawn the child may not have exec'd yet: wait for sleep's own image.
        wait_until("the child to exec", DEADLINE, || cmdline(pid) == ["sleep", "600"]);
        assert_eq!(environ(pid, "FLOE_TESTKIT_PROBE").as_deref(), Some("seen"));
        assert_eq!(environ(pid, "FLOE_TESTKIT_PROBE_NOT_SET"), None);
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
