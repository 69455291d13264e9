//! Failpoints compiled in: the rules of `FLOE_FAILPOINTS`, read once, and what a hit does.

use std::sync::OnceLock;
use std::time::Duration;

use crate::spec::{parse, Action, Rule};

/// The process's rules, read from the environment at the first hit.
fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let Ok(spec) = std::env::var(crate::ENV) else {
            return Vec::new();
        };
        match parse(&spec) {
            Ok(rules) => rules,
            Err(e) => {
                // A test asked for failpoints this build does not have: running on would
                // pass the test for the wrong reason. (eprintln rather than tracing: this
                // must show whatever the log filter.)
                eprintln!("floe: {e}");
                std::process::exit(2);
            }
        }
    })
}

/// A pass through failpoint `name` (with its qualifier, if it takes one): does what the
/// rules of `FLOE_FAILPOINTS` that match it say. Called by [`failpoint!`](crate::failpoint).
pub fn hit(name: &'static str, qualifier: Option<&str>) {
    for rule in rules().iter().filter(|r| r.matches(name, qualifier)) {
        let (n, due) = rule.count();
        let Some(action) = due else { continue };
        let at = match qualifier {
            Some(q) => format!("{name}[{q}]"),
            None => name.to_string(),
        };
        // The test reads this line to know where the process stopped; stderr is unbuffered.
        eprintln!("floe failpoint {at}: {action} at hit {n}");
        match action {
            Action::Kill { .. } => kill(),
            Action::Pause { .. } => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Action::Off => {}
        }
    }
}

/// SIGKILL to this process: it ends here, as a `kill -9` from outside would end it.
fn kill() -> ! {
    let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    // Not reached: SIGKILL cannot be caught or ignored. Should raising fail, end as abruptly.
    std::process::abort()
}
