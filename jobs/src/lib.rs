//! Jobs shipped with Floe, and the data they run on.
//!
//! - `fails-per-minute`: failed payments per user per minute of event time, from a JSON-lines
//!   file (generated on first run), with late data and malformed lines set aside.

pub mod payments;
