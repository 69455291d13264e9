//! The window operator: assigns records to windows per key, keeps their contents in keyed
//! state, and fires them by event- or processing-time timers.

use std::marker::PhantomData;
use std::sync::Arc;

use floe_checkpoints::{assign_key_group, KeyGroup, KeyedStateBackend, StateKey, StateSnapshot, ValueState};
use floe_runtime::{
    downcast_batch, Batch, CheckpointBarrier, Data, Operator, OperatorContext, Output, Record, Result, RuntimeError,
    TimerService, Timestamp, NO_TIMESTAMP,
};
use tracing::debug;

use super::contents::Contents;
use super::{TimeWindow, WindowAssigner, WindowConfig};
use crate::collector::Collector;

/// Runs windows of one kind of contents.
pub(crate) struct WindowOperator<K, T, C: Contents<K, T>> {
    key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
    assigner: Arc<dyn WindowAssigner>,
    contents: C,
    config: WindowConfig,
    event_time: bool,
    merging: bool,
    max_parallelism: u16,
    backend: Option<KeyedStateBackend<K>>,
    /// Per key, the session windows that are open (merging assigners only).
    sessions: Option<ValueState<Vec<TimeWindow>>>,
    timers: TimerService<K, TimeWindow>,
    out: Collector<C::Out>,
    late: Vec<Record<T>>,
    late_dropped: u64,
    assigned: Vec<TimeWindow>,
    _t: PhantomData<fn(T)>,
}

fn not_open() -> RuntimeError {
    RuntimeError::Internal("window operator used before open".into())
}

impl<K: StateKey, T: Data, C: Contents<K, T>> WindowOperator<K, T, C> {
    pub(crate) fn new(
        key_fn: Arc<dyn Fn(&T) -> K + Send + Sync>,
        assigner: Arc<dyn WindowAssigner>,
        contents: C,
        config: WindowConfig,
    ) -> Self {
        WindowOperator {
            event_time: assigner.is_event_time(),
            merging: assigner.is_merging(),
            key_fn,
            assigner,
            contents,
            config,
            max_parallelism: 1,
            backend: None,
            sessions: None,
            timers: TimerService::default(),
            out: Collector::default(),
            late: Vec::new(),
            late_dropped: 0,
            assigned: Vec::new(),
            _t: PhantomData,
        }
    }

    /// When the window's state goes: after the allowed lateness in event time, at its end in
    /// processing time.
    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        if self.event_time {
            w.max_timestamp().saturating_add(self.config.allowed_lateness_ms)
        } else {
            w.max_timestamp()
        }
    }

    fn is_late(&self, w: &TimeWindow, watermark: Timestamp) -> bool {
        self.event_time && self.cleanup_time(w) <= watermark
    }

    /// Timers of a window that just got state: fire at its end, clean up after lateness.
    fn register_timers(&mut self, kg: KeyGroup, key: &K, w: &TimeWindow, watermark: Timestamp) {
        let cleanup = self.cleanup_time(w);
        let store = if self.event_time {
            &mut self.timers.event_time
        } else {
            &mut self.timers.processing_time
        };
        if !self.event_time || w.max_timestamp() > watermark {
            store.register(w.max_timestamp(), kg, key, w);
        }
        if cleanup != w.max_timestamp() {
            store.register(cleanup, kg, key, w);
        }
    }

    fn delete_timers(&mut self, kg: KeyGroup, key: &K, w: &TimeWindow) {
        let cleanup = self.cleanup_time(w);
        let store = if self.event_time {
            &mut self.timers.event_time
        } else {
            &mut self.timers.processing_time
        };
        store.delete(w.max_timestamp(), kg, key, w);
        store.delete(cleanup, kg, key, w);
    }

    fn fire(&mut self, kg: KeyGroup, key: &K, w: &TimeWindow) -> Result<()> {
        let b = self.backend.as_mut().ok_or_else(not_open)?;
        self.out.set_timestamp(w.max_timestamp());
        self.contents.emit(b, kg, key, w, &mut self.out)
    }

    /// A timer of window `w` fired at `t`.
    fn on_timer(&mut self, t: Timestamp, kg: KeyGroup, key: K, w: TimeWindow) -> Result<()> {
        if t == w.max_timestamp() {
            self.fire(kg, &key, &w)?;
        }
        if t == self.cleanup_time(&w) {
            let b = self.backend.as_mut().ok_or_else(not_open)?;
            self.contents.clear(b, kg, &key, &w)?;
            if let Some(h) = &self.sessions {
                let remaining = b.value_update(h, kg, &key, &(), Vec::new, |open| {
                    open.retain(|s| *s != w);
                    open.len()
                })?;
                if remaining == 0 {
                    b.value_clear(h, kg, &key, &())?;
                }
            }
        }
        Ok(())
    }

    /// Adds a record to its (non-merging) windows; returns false if all of them were late.
    fn add_to_windows(&mut self, kg: KeyGroup, key: &K, value: &T, watermark: Timestamp) -> Result<bool> {
        let mut windows = std::mem::take(&mut self.assigned);
        let mut on_time = false;
        let mut result = Ok(());
        for w in &windows {
            if self.is_late(w, watermark) {
                continue;
            }
            on_time = true;
            if let Err(e) = self.add_to_window(kg, key, w, value, watermark) {
                result = Err(e);
                break;
            }
        }
        windows.clear();
        self.assigned = windows;
        result.map(|()| on_time)
    }

    fn add_to_window(&mut self, kg: KeyGroup, key: &K, w: &TimeWindow, value: &T, watermark: Timestamp) -> Result<()> {
        let b = self.backend.as_mut().ok_or_else(not_open)?;
        if self.contents.add(b, kg, key, w, value)? {
            self.register_timers(kg, key, w, watermark);
        }
        if self.event_time && w.max_timestamp() <= watermark {
            // Late but within the allowed lateness: the window fires again, updated.
            self.fire(kg, key, w)?;
        }
        Ok(())
    }

    /// Adds a record to its session, merging every open session it touches; returns false
    /// if the resulting session is late.
    fn add_to_session(&mut self, kg: KeyGroup, key: &K, value: &T, watermark: Timestamp) -> Result<bool> {
        let Some(new) = self.assigned.pop() else {
            return Ok(true);
        };
        self.assigned.clear();
        let h = self.sessions.clone().ok_or_else(not_open)?;
        let mut open = self
            .backend
            .as_mut()
            .ok_or_else(not_open)?
            .value_get(&h, kg, key, &())?
            .unwrap_or_default();
        let mut merged = new;
        let mut absorbed: Vec<TimeWindow> = Vec::new();
        loop {
            let before = absorbed.len();
            for w in &open {
                if !absorbed.contains(w) && w.intersects(&merged) {
                    merged = merged.cover(w);
                    absorbed.push(*w);
                }
            }
            if absorbed.len() == before {
                break;
            }
        }
        if self.is_late(&merged, watermark) {
            return Ok(false);
        }
        if !(absorbed.len() == 1 && absorbed[0] == merged) {
            if !absorbed.is_empty() {
                let b = self.backend.as_mut().ok_or_else(not_open)?;
                self.contents.merge(b, kg, key, &absorbed, &merged)?;
            }
            for w in &absorbed {
                self.delete_timers(kg, key, w);
            }
            open.retain(|w| !absorbed.contains(w));
            open.push(merged);
            let b = self.backend.as_mut().ok_or_else(not_open)?;
            b.value_set(&h, kg, key, &(), open)?;
            self.register_timers(kg, key, &merged, watermark);
        }
        let b = self.backend.as_mut().ok_or_else(not_open)?;
        self.contents.add(b, kg, key, &merged, value)?;
        if self.event_time && merged.max_timestamp() <= watermark {
            self.fire(kg, key, &merged)?;
        }
        Ok(true)
    }

    fn arm_processing_timer(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        if let Some(next) = self.timers.processing_time.next_timestamp()? {
            ctx.request_wakeup(next);
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut dyn Output) -> Result<()> {
        self.out.flush(out)?;
        if !self.late.is_empty() {
            match self.config.late_tag {
                Some(tag) => out.emit_side(tag, Box::new(std::mem::take(&mut self.late)))?,
                None => {
                    self.late_dropped += self.late.len() as u64;
                    debug!(
                        dropped = self.late_dropped,
                        "late records dropped (no late-data side output)"
                    );
                    self.late.clear();
                }
            }
        }
        Ok(())
    }
}

impl<K: StateKey, T: Data, C: Contents<K, T>> Operator for WindowOperator<K, T, C> {
    fn open(&mut self, ctx: &mut OperatorContext) -> Result<()> {
        let info = ctx.info();
        self.max_parallelism = info.max_parallelism;
        let mut backend = info.keyed_state_backend()?;
        crate::keyed::restore_keyed(ctx, &mut backend, &mut self.timers)?;
        self.contents.register(&mut backend)?;
        if self.merging {
            self.sessions = Some(backend.value_state("session-windows", None)?);
        }
        self.backend = Some(backend);
        Ok(())
    }

    fn snapshot_state(&mut self, _barrier: &CheckpointBarrier, _ctx: &mut OperatorContext) -> Result<StateSnapshot> {
        crate::keyed::snapshot_keyed(self.backend.as_mut(), &mut self.timers)
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: Batch,
        ctx: &mut OperatorContext,
        out: &mut dyn Output,
    ) -> Result<()> {
        let now = ctx.processing_time();
        let watermark = ctx.current_watermark();
        self.backend.as_mut().ok_or_else(not_open)?.set_processing_time(now)?;
        let before = self.timers.processing_time.generation();
        for r in downcast_batch::<T>(batch)? {
            let ts = if self.event_time {
                if r.timestamp == NO_TIMESTAMP {
                    return Err(RuntimeError::InvalidRecord(format!(
                        "a record of `{}` has no event timestamp: call assign_timestamps(...) before an event-time window",
                        std::any::type_name::<T>()
                    )));
                }
                r.timestamp
            } else {
                now
            };
            let key = (self.key_fn)(&r.value);
            let kg = assign_key_group(&key, self.max_parallelism);
            self.assigner.assign(ts, &mut self.assigned);
            let on_time = if self.merging {
                self.add_to_session(kg, &key, &r.value, watermark)?
            } else {
                self.add_to_windows(kg, &key, &r.value, watermark)?
            };
            if !on_time {
                self.late.push(r);
            }
        }
        self.timers.maintain()?;
        if !self.event_time && self.timers.processing_time.generation() != before {
            self.arm_processing_timer(ctx)?;
        }
        self.flush(out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        self.backend
            .as_mut()
            .ok_or_else(not_open)?
            .set_processing_time(ctx.processing_time())?;
        let batch_size = ctx.info().batch_size;
        while let Some((t, kg, key, w)) = self.timers.event_time.pop_due(watermark)? {
            self.on_timer(t, kg, key, w)?;
            if self.out.len() >= batch_size {
                self.flush(out)?;
            }
        }
        self.flush(out)?;
        out.emit_watermark(watermark)
    }

    fn on_processing_time(&mut self, now: Timestamp, ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        self.backend.as_mut().ok_or_else(not_open)?.set_processing_time(now)?;
        while let Some((t, kg, key, w)) = self.timers.processing_time.pop_due(now)? {
            self.on_timer(t, kg, key, w)?;
        }
        self.arm_processing_timer(ctx)?;
        self.flush(out)
    }

    fn finish(&mut self, _ctx: &mut OperatorContext, out: &mut dyn Output) -> Result<()> {
        // The input ended: processing-time windows fire now rather than never.
        while let Some((t, kg, key, w)) = self.timers.processing_time.pop_due(Timestamp::MAX)? {
            self.on_timer(t, kg, key, w)?;
        }
        self.flush(out)
    }
}
