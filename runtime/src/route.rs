//! Edge writers: route the records of a batch to the channels of the downstream subtasks,
//! buffering per channel so that records cross a channel in batches.

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};
use floe_checkpoints::{subtask_for_key_group, KeyGroup};

use crate::element::{downcast_batch, Batch, Message, Record};
use crate::error::{Result, RuntimeError};
use crate::metrics::BackPressure;

/// Writes one upstream subtask's output on one edge.
pub trait EdgeWriter: Send {
    /// Routes the records of `batch`.
    fn write(&mut self, batch: Batch) -> Result<()>;
    /// Sends every buffered record now.
    fn flush(&mut self) -> Result<()>;
    /// Flushes, then sends a control message to every channel.
    fn broadcast(&mut self, make: &dyn Fn() -> Message) -> Result<()>;
    /// Counts the time this writer blocks on full channels in `pressure` (its task's).
    /// Writers that never block may ignore it.
    fn set_back_pressure(&mut self, _pressure: Arc<BackPressure>) {}
}

/// Sends `msg` on `tx`: without waiting when the channel has room, otherwise waiting for
/// room and counting the wait in `pressure`. Fails only when the receiver is gone.
pub fn send_counting_blocked(tx: &Sender<Message>, msg: Message, pressure: Option<&BackPressure>) -> Result<()> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(msg)) => match pressure {
            Some(p) => p.blocked(|| tx.send(msg)),
            None => tx.send(msg),
        }
        .map_err(|_| RuntimeError::Cancelled),
        Err(TrySendError::Disconnected(_)) => Err(RuntimeError::Cancelled),
    }
}

/// Builds the writers of an edge; typed on the record type by the DSL.
pub trait EdgeWriterFactory: Send + Sync {
    /// A writer for upstream subtask `subtask` over `channels` (one per downstream subtask,
    /// or the single forward channel).
    fn create(&self, channels: Vec<Sender<Message>>, subtask: usize, batch_size: usize) -> Box<dyn EdgeWriter>;
}

/// How a typed edge chooses a channel.
pub enum Route<T> {
    /// Everything to the one channel.
    Forward,
    /// Round robin.
    Rebalance,
    /// By key group (computed by the function) over `max_parallelism` key groups.
    Hash(Arc<dyn Fn(&T) -> KeyGroup + Send + Sync>, u16),
    /// Every record to every channel.
    Broadcast,
}

impl<T> Clone for Route<T> {
    fn clone(&self) -> Self {
        match self {
            Route::Forward => Route::Forward,
            Route::Rebalance => Route::Rebalance,
            Route::Hash(f, m) => Route::Hash(f.clone(), *m),
            Route::Broadcast => Route::Broadcast,
        }
    }
}

/// The factory of typed edge writers.
pub struct TypedEdgeWriterFactory<T> {
    route: Route<T>,
}

impl<T> TypedEdgeWriterFactory<T> {
    /// A factory routing by `route`.
    pub fn new(route: Route<T>) -> Self {
        TypedEdgeWriterFactory { route }
    }
}

impl<T: Clone + Send + 'static> EdgeWriterFactory for TypedEdgeWriterFactory<T> {
    fn create(&self, channels: Vec<Sender<Message>>, subtask: usize, batch_size: usize) -> Box<dyn EdgeWriter> {
        let n = channels.len();
        Box::new(TypedEdgeWriter {
            buffers: (0..n).map(|_| Vec::with_capacity(batch_size)).collect(),
            channels,
            route: self.route.clone(),
            next: subtask % n.max(1),
            batch_size: batch_size.max(1),
            pressure: None,
        })
    }
}

struct TypedEdgeWriter<T> {
    channels: Vec<Sender<Message>>,
    buffers: Vec<Vec<Record<T>>>,
    route: Route<T>,
    next: usize,
    batch_size: usize,
    pressure: Option<Arc<BackPressure>>,
}

impl<T: Clone + Send + 'static> TypedEdgeWriter<T> {
    fn send(&mut self, i: usize) -> Result<()> {
        let full = std::mem::replace(&mut self.buffers[i], Vec::with_capacity(self.batch_size));
        send_counting_blocked(
            &self.channels[i],
            Message::Data(Box::new(full)),
            self.pressure.as_deref(),
        )
    }

    fn push(&mut self, i: usize, r: Record<T>) -> Result<()> {
        self.buffers[i].push(r);
        if self.buffers[i].len() >= self.batch_size {
            self.send(i)?;
        }
        Ok(())
    }
}

impl<T: Clone + Send + 'static> EdgeWriter for TypedEdgeWriter<T> {
    fn write(&mut self, batch: Batch) -> Result<()> {
        let n = self.channels.len();
        if n == 1 && self.buffers[0].is_empty() && batch.len() >= self.batch_size / 2 {
            // A large enough batch for a single channel goes as it is: no copy at all.
            return send_counting_blocked(&self.channels[0], Message::Data(batch), self.pressure.as_deref());
        }
        let records = downcast_batch::<T>(batch)?;
        match &self.route {
            Route::Forward => {
                for r in records {
                    self.push(0, r)?;
                }
            }
            Route::Rebalance => {
                for r in records {
                    let i = self.next;
                    self.next = (i + 1) % n;
                    self.push(i, r)?;
                }
            }
            Route::Hash(key_group, max) => {
                let (key_group, max) = (key_group.clone(), *max);
                for r in records {
                    let i = subtask_for_key_group(key_group(&r.value), max, n);
                    self.push(i, r)?;
                }
            }
            Route::Broadcast => {
                for r in records {
                    for i in 0..n {
                        self.push(i, r.clone())?;
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for i in 0..self.channels.len() {
            if !self.buffers[i].is_empty() {
                self.send(i)?;
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, make: &dyn Fn() -> Message) -> Result<()> {
        self.flush()?;
        for c in &self.channels {
            send_counting_blocked(c, make(), self.pressure.as_deref())?;
        }
        Ok(())
    }

    fn set_back_pressure(&mut self, pressure: Arc<BackPressure>) {
        self.pressure = Some(pressure);
    }
}
