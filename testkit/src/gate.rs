//! A gate that a test holds shut in the middle of a pipeline: backpressure, a sink that
//! falls behind, a source that pauses are then certain instead of "slow enough".
//!
//! The test owns the [`Gate`]; the pipeline's functions hold [`GatePass`]es (cheap clones)
//! and call [`GatePass::pass`] once per record, which blocks until the test lets that many
//! through ([`Gate::release`]) or opens the gate for good ([`Gate::open`]). The gate opens
//! when the test drops it, so a failing test never leaves a job blocked behind it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::wait::wait_for;

#[derive(Debug, Default)]
struct State {
    open: bool,
    /// Passes allowed and not yet taken.
    permits: u64,
    /// Passes taken.
    passed: u64,
    /// Callers blocked in `pass` now.
    waiting: usize,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking pipeline function cannot leave the counts half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The test's side: shut until released or opened; opens when dropped.
///
/// ```
/// use floe_testkit::Gate;
/// let gate = Gate::closed();
/// let pass = gate.pass();
/// let worker = std::thread::spawn(move || (0..3).for_each(|_| pass.pass()));
/// gate.release(2);
/// gate.wait_until_blocked(1, floe_testkit::DEADLINE); // the third waits
/// assert_eq!(gate.passed(), 2);
/// gate.open();
/// worker.join().unwrap();
/// assert_eq!(gate.passed(), 3);
/// ```
#[derive(Debug)]
pub struct Gate {
    inner: Arc<Inner>,
}

/// The pipeline's side: blocks in [`pass`](Self::pass) until the gate lets it through.
#[derive(Clone, Debug)]
pub struct GatePass {
    inner: Arc<Inner>,
}

impl Gate {
    /// A gate that lets nothing through yet.
    pub fn closed() -> Gate {
        Gate { inner: Arc::default() }
    }

    /// A handle for the pipeline (any number, on any thread).
    pub fn pass(&self) -> GatePass {
        GatePass {
            inner: self.inner.clone(),
        }
    }

    /// Lets `n` more passes through.
    pub fn release(&self, n: u64) {
        let mut s = self.inner.lock();
        s.permits = s.permits.saturating_add(n);
        self.inner.changed.notify_all();
    }

    /// Lets everything through from now on.
    pub fn open(&self) {
        self.inner.lock().open = true;
        self.inner.changed.notify_all();
    }

    /// Passes taken so far.
    pub fn passed(&self) -> u64 {
        self.inner.lock().passed
    }

    /// Callers blocked at the gate now.
    pub fn blocked(&self) -> usize {
        self.inner.lock().waiting
    }

    /// Waits until every pass released so far has been taken and at least `callers` are
    /// blocked at the gate: the pipeline has done all it was allowed and stands still.
    /// Panics after `timeout`.
    pub fn wait_until_blocked(&self, callers: usize, timeout: Duration) {
        wait_for(&format!("{callers} callers blocked at the gate"), timeout, || {
            let s = self.inner.lock();
            (s.permits == 0 && s.waiting >= callers).then_some(())
        })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

impl GatePass {
    /// Blocks until the gate lets one through.
    pub fn pass(&self) {
        let mut s = self.inner.lock();
        s.waiting += 1;
        while !s.open && s.permits == 0 {
            s = self.inner.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.waiting -= 1;
        if !s.open {
            s.permits -= 1;
        }
        s.passed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::DEADLINE;

    #[test]
    fn lets_through_exactly_what_is_released() {
        let gate = Gate::closed();
        let passes: Vec<_> = (0..3)
            .map(|_| {
                let pass = gate.pass();
                std::thread::spawn(move || (0..10).for_each(|_| pass.pass()))
            })
            .collect();
        gate.wait_until_blocked(3, DEADLINE);
        assert_eq!(gate.passed(), 0);
        gate.release(7);
        gate.wait_until_blocked(3, DEADLINE);
        assert_eq!(gate.passed(), 7, "no more than released, no fewer");
        gate.open();
        for p in passes {
            p.join().unwrap();
        }
        assert_eq!((gate.passed(), gate.blocked()), (30, 0));
    }

    #[test]
    fn dropping_the_gate_opens_it() {
        let gate = Gate::closed();
        let pass = gate.pass();
        let blocked = std::thread::spawn(move || pass.pass());
        gate.wait_until_blocked(1, DEADLINE);
        drop(gate);
        blocked.join().unwrap();
    }

    #[test]
    fn waiting_for_callers_that_never_come_fails_at_the_deadline() {
        let gate = Gate::closed();
        let r = std::panic::catch_unwind(|| gate.wait_until_blocked(1, Duration::from_millis(30)));
        assert!(r.is_err());
    }
}
