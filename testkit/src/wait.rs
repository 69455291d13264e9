//! Waiting on a condition, never on time: poll until it holds, and fail only at a deadline
//! generous enough that reaching it means the test hung (two loaded cores run several
//! brokers, clusters and builds at once).

use std::time::{Duration, Instant};

/// The deadline of a wait that names none: reaching it means something hung, not that the
/// machine was slow.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it gives a value and returns it; panics naming `what` (and how long
/// it waited) once `timeout` has passed.
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// let v = floe_testkit::wait_for("the third look", Duration::from_secs(5), || {
///     n += 1;
///     (n == 3).then_some(n * 10)
/// });
/// assert_eq!(v, 30);
/// ```
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        let waited = start.elapsed();
        assert!(waited < timeout, "timed out waiting for {what} (after {waited:?})");
        std::thread::sleep(POLL.min(timeout - waited));
    }
}

/// Polls `cond` until it holds; panics naming `what` once `timeout` has passed.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
/// let done = AtomicBool::new(true);
/// floe_testkit::wait_until("done", Duration::from_secs(5), || done.load(Ordering::SeqCst));
/// ```
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || cond().then_some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_first_value_the_check_returns() {
        let mut looks = 0;
        let v = wait_for("a value", DEADLINE, || {
            looks += 1;
            (looks >= 4).then_some(looks)
        });
        assert_eq!(v, 4);
    }

    #[test]
    fn a_condition_that_never_holds_fails_at_the_deadline_naming_it() {
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| wait_until("the impossible", Duration::from_millis(50), || false));
        let message = *r.expect_err("a panic").downcast::<String>().expect("a message");
        assert!(message.contains("timed out waiting for the impossible"), "{message}");
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
