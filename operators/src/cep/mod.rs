//! Complex event processing with Flink CEP semantics: a pure, per-key engine.
//!
//! This module owns the pattern API ([`Pattern`]), its compilation into an NFA ([`Nfa`]) and
//! the per-key engine state ([`NfaState`]). It knows nothing of operators, keyed state or
//! timers: the operator keeps one serialized [`NfaState`] per key, feeds it the key's events
//! in event-time order with [`Nfa::process`], calls [`Nfa::advance_time`] on watermarks, and
//! registers a timer at [`NfaState::next_deadline`].
//!
//! ```
//! use std::time::Duration;
//! use floe_operators::cep::{AfterMatchSkipStrategy, Nfa, NfaState, Pattern};
//!
//! // Three failed logins (other events in between ignored) within a minute, then a success.
//! let pattern = Pattern::<(&'static str, i64)>::begin_with_skip("fails", AfterMatchSkipStrategy::SkipPastLastEvent)
//!     .where_(|e| e.0 == "FAIL")
//!     .times(3)
//!     .followed_by("ok")
//!     .where_(|e| e.0 == "OK")
//!     .within(Duration::from_secs(60));
//! let nfa = Nfa::compile(pattern)?;
//! let mut state = NfaState::new(); // one per key
//! let mut matches = Vec::new();
//! for (i, kind) in ["FAIL", "FAIL", "FAIL", "OK", "FAIL", "FAIL"].into_iter().enumerate() {
//!     let ts = 1_000 * i as i64;
//!     nfa.process(&mut state, (kind, ts), ts, &mut matches)?;
//! }
//! assert_eq!(matches.len(), 1);
//! assert_eq!(matches[0].get("fails").len(), 3);
//! assert_eq!(matches[0].get("ok"), &[("OK", 3_000)]);
//!
//! // Once their windows pass, the partial matches started by the last two events time out.
//! let mut timed_out = Vec::new();
//! nfa.advance_time(&mut state, 70_000, &mut matches, &mut timed_out)?;
//! assert_eq!(timed_out.len(), 2);
//! assert_eq!(timed_out[0].get("fails").len(), 2);
//! assert_eq!(timed_out[0].timeout_timestamp(), 64_000);
//! assert!(state.is_empty());
//! # Ok::<(), floe_operators::cep::CepError>(())
//! ```
//!
//! # Semantics
//!
//! Timestamps are milliseconds; events of a key are processed in the order given (ties in
//! timestamp keep that order). A *match* assigns to each positive step an ordered run of
//! events (as many as its quantifier allows; none if optional), the steps' runs following one
//! another, such that:
//!
//! - every event satisfies its step's condition, evaluated on the partial match before it
//!   (iterative conditions see those events through [`MatchContext`]), and not the step's
//!   `until` condition;
//! - between two consecutive events of the match, where the second is the first event of step
//!   *s*, the outer contiguity of *s* holds (even if optional steps in between matched
//!   nothing); where it is a later event of *s*, the inner contiguity of *s* holds. Strict: no
//!   event in between. Relaxed: no event in between satisfies *s*'s condition (nor, inside a
//!   loop, its `until`). Non-deterministic relaxed: anything in between (but, inside a loop,
//!   no `until` event);
//! - with `within(w)`: every event is less than `w` after the first one (`ts - start < w`);
//!   partial matches are timed out at the first event or watermark with `t - start >= w`;
//! - `not_next(n)` after step *s*: the event right after *s*'s last event exists and does not
//!   satisfy *n*; if only optional steps follow, a match skipping them completes when that
//!   event arrives (within the window);
//! - `not_followed_by(n)` after step *s*: no event after *s*'s first event, up to **and
//!   including** the first event of the next matched step, satisfies *n*; if only optional
//!   steps follow (a trailing negation, which requires `within`), a match skipping them
//!   completes when the window passes (at an event or watermark `>= start + w`) without such
//!   an event;
//! - a greedy step *g*: no event after the last event before the next step's first event (or
//!   from the first event of the match, if *g* is skipped at its start), up to and including
//!   that first event, satisfies *g*'s condition: the loop is only left, and an optional
//!   greedy step only skipped, at an event it cannot take.
//!
//! Matches are emitted when their last event arrives (a trailing negation: see above), ordered
//! by first event; matches completed together with the same first event are ordered shorter
//! first, then by their sequences of `(event, step)` (Flink leaves this order unspecified). With a skip strategy other than
//! `NoSkip`, a complete match is held back while a partial match that started earlier is still
//! running, then emitted and skipping applied in that order (as Flink does). A partial match
//! still waiting when its window passes is reported as timed out, once per distinct partial
//! match, unless a skip strategy discarded it before.
//!
//! # Deviations from Flink
//!
//! - A `not_followed_by` event that is also the next step's first event kills the match (Flink
//!   kills continuing partial matches but still emits a match completed by that event).
//! - A `not_next` event only ends the branch that leaves the previous step there; a loop may
//!   still take that event (Flink discards the whole partial match).
//! - A `not_followed_by` followed only by optional steps behaves as a trailing one (Flink
//!   emits a match skipping them at once, without checking the negation), so it needs
//!   `within`.
//! - A trailing `not_followed_by` after a looping step emits every run of the loop (Flink only
//!   emits runs followed by some event inside the window).
//! - A trailing `not_next` after steps that are all optional completes when the next event does
//!   not satisfy it (Flink emits right away).
//! - With `NoSkip`, matches completed at a watermark are not held back.
//! - Not supported (compile error): quantifiers on groups; `greedy` with `until`, on the last
//!   step, or not followed directly by a mandatory positive step; `not_next` next to another
//!   negation; per-step windows.

mod compiler;
mod error;
mod matches;
mod nfa;
pub mod operator;
mod pattern;
mod shared_buffer;
mod skip;

pub use error::{CepError, Result};
pub use matches::{Match, MatchContext, TimedOut};
pub use nfa::{Nfa, NfaState, ProcessStats};
pub use pattern::{AfterMatchSkipStrategy, Condition, Contiguity, Pattern};
