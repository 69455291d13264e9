//! Window assigners.

use std::time::Duration;

use super::TimeWindow;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Start of the window of `size` (shifted by `offset`) that contains `ts`; right for negative
/// timestamps too.
fn window_start(ts: i64, offset: i64, size: i64) -> i64 {
    ts - (ts - offset).rem_euclid(size)
}

/// Assigns the windows a record belongs to.
pub trait WindowAssigner: Send + Sync + 'static {
    /// Pushes the windows of a record with timestamp `ts` (event time, or the current
    /// processing time for processing-time assigners) onto `out`.
    fn assign(&self, ts: i64, out: &mut Vec<TimeWindow>);

    /// Whether windows are in event time (fired by watermarks) or processing time.
    fn is_event_time(&self) -> bool;

    /// Whether intersecting windows merge (session windows).
    fn is_merging(&self) -> bool {
        false
    }

    /// Checks the parameters before the job starts; the error says what to change.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

fn check_positive(what: &str, v: i64) -> Result<(), String> {
    if v > 0 {
        Ok(())
    } else {
        Err(format!("{what} must be at least 1 ms"))
    }
}

macro_rules! tumbling {
    ($(#[$doc:meta])* $name:ident, $event:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: i64,
            offset: i64,
        }

        impl $name {
            /// Windows of `size`, aligned to the epoch.
            pub fn of(size: Duration) -> Self {
                $name { size: ms(size), offset: 0 }
            }

            /// Shifts the windows by `offset` (e.g. hourly windows starting at :15).
            pub fn with_offset(mut self, offset: Duration) -> Self {
                self.offset = ms(offset);
                self
            }
        }

        impl WindowAssigner for $name {
            fn assign(&self, ts: i64, out: &mut Vec<TimeWindow>) {
                let start = window_start(ts, self.offset, self.size);
                out.push(TimeWindow::new(start, start.saturating_add(self.size)));
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn validate(&self) -> Result<(), String> {
                check_positive("tumbling window size", self.size)?;
                if self.offset.abs() >= self.size {
                    return Err(format!("window offset {} ms must be smaller than the size {} ms", self.offset, self.size));
                }
                Ok(())
            }
        }
    };
}

tumbling!(
    /// Fixed-size, non-overlapping windows of event time.
    ///
    /// ```
    /// use floe_operators::window::{TumblingEventTimeWindows, WindowAssigner, TimeWindow};
    /// use std::time::Duration;
    /// let mut w = vec![];
    /// TumblingEventTimeWindows::of(Duration::from_secs(60)).assign(61_000, &mut w);
    /// assert_eq!(w, vec![TimeWindow::new(60_000, 120_000)]);
    /// ```
    TumblingEventTimeWindows,
    true
);
tumbling!(
    /// Fixed-size, non-overlapping windows of processing time.
    ///
    /// ```
    /// use floe_operators::window::{TumblingProcessingTimeWindows, WindowAssigner};
    /// use std::time::Duration;
    /// assert!(!TumblingProcessingTimeWindows::of(Duration::from_secs(1)).is_event_time());
    /// ```
    TumblingProcessingTimeWindows,
    false
);

macro_rules! sliding {
    ($(#[$doc:meta])* $name:ident, $event:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            size: i64,
            slide: i64,
        }

        impl $name {
            /// Windows of `size` starting every `slide`.
            pub fn of(size: Duration, slide: Duration) -> Self {
                $name { size: ms(size), slide: ms(slide) }
            }
        }

        impl WindowAssigner for $name {
            fn assign(&self, ts: i64, out: &mut Vec<TimeWindow>) {
                let mut start = window_start(ts, 0, self.slide);
                while start > ts.saturating_sub(self.size) {
                    out.push(TimeWindow::new(start, start.saturating_add(self.size)));
                    start -= self.slide;
                }
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn validate(&self) -> Result<(), String> {
                check_positive("sliding window size", self.size)?;
                check_positive("sliding window slide", self.slide)
            }
        }
    };
}

sliding!(
    /// Overlapping windows of event time: each record is in `size / slide` windows.
    ///
    /// ```
    /// use floe_operators::window::{SlidingEventTimeWindows, WindowAssigner, TimeWindow};
    /// use std::time::Duration;
    /// let mut w = vec![];
    /// SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5)).assign(7_000, &mut w);
    /// assert_eq!(w, vec![TimeWindow::new(5_000, 15_000), TimeWindow::new(0, 10_000)]);
    /// ```
    SlidingEventTimeWindows,
    true
);
sliding!(
    /// Overlapping windows of processing time.
    ///
    /// ```
    /// use floe_operators::window::{SlidingProcessingTimeWindows, WindowAssigner};
    /// use std::time::Duration;
    /// let a = SlidingProcessingTimeWindows::of(Duration::from_secs(10), Duration::ZERO);
    /// assert!(a.validate().unwrap_err().contains("slide"));
    /// ```
    SlidingProcessingTimeWindows,
    false
);

macro_rules! session {
    ($(#[$doc:meta])* $name:ident, $event:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            gap: i64,
        }

        impl $name {
            /// Sessions that close after `gap` without records.
            pub fn with_gap(gap: Duration) -> Self {
                $name { gap: ms(gap) }
            }
        }

        impl WindowAssigner for $name {
            fn assign(&self, ts: i64, out: &mut Vec<TimeWindow>) {
                out.push(TimeWindow::new(ts, ts.saturating_add(self.gap)));
            }

            fn is_event_time(&self) -> bool {
                $event
            }

            fn is_merging(&self) -> bool {
                true
            }

            fn validate(&self) -> Result<(), String> {
                check_positive("session gap", self.gap)
            }
        }
    };
}

session!(
    /// Sessions of event time: a key's records closer than the gap share a window.
    ///
    /// ```
    /// use floe_operators::window::{EventTimeSessionWindows, WindowAssigner, TimeWindow};
    /// use std::time::Duration;
    /// let mut w = vec![];
    /// EventTimeSessionWindows::with_gap(Duration::from_secs(5)).assign(1_000, &mut w);
    /// assert_eq!(w, vec![TimeWindow::new(1_000, 6_000)]);
    /// ```
    EventTimeSessionWindows,
    true
);
session!(
    /// Sessions of processing time.
    ///
    /// ```
    /// use floe_operators::window::{ProcessingTimeSessionWindows, WindowAssigner};
    /// use std::time::Duration;
    /// assert!(ProcessingTimeSessionWindows::with_gap(Duration::from_secs(5)).is_merging());
    /// ```
    ProcessingTimeSessionWindows,
    false
);
