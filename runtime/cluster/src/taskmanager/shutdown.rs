//! Stopping a task manager: a flag its loop checks and its waits wake on, set by SIGTERM,
//! Ctrl-C or (in tests and embeddings) [`Shutdown::trigger`].

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{ClusterError, Result};

/// A shared stop flag. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    /// A flag not yet set.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Sets the flag and wakes every wait.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.inner;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Whether the flag is set.
    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for the flag; returns whether it is set.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (flag, wake) = &*self.inner;
        let mut set = flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*set {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            set = wake
                .wait_timeout(set, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *set
    }

    /// Sets the flag then calls `on_signal` when the process gets SIGTERM or SIGINT
    /// (Ctrl-C). The handlers are installed before this returns.
    pub fn on_signals(&self, on_signal: impl FnOnce(&'static str) + Send + 'static) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClusterError::io("cannot start the signal handler", e))?;
        let signals = runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            Ok::<_, std::io::Error>((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?))
        });
        let (mut term, mut int) = signals.map_err(|e| ClusterError::io("cannot install the signal handlers", e))?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let name = runtime.block_on(async {
                    tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    }
                });
                // Set first, so the loop starts nothing new while `on_signal` cleans up.
                shutdown.trigger();
                on_signal(name);
            })
            .map_err(|e| ClusterError::io("cannot start the signal handler thread", e))?;
        Ok(())
    }
}
