//! Fixtures shared by Floe's tests, one place per kind (a dev-dependency of the crates whose
//! tests use them):
//!
//! - [`wait_for`] / [`wait_until`]: wait on a condition with a deadline that only a hung test
//!   reaches ([`DEADLINE`]), never on time;
//! - [`Gate`]: hold a pipeline stage shut from the test, so that backpressure, a sink that
//!   falls behind or a source that pauses are certain rather than "slow enough";
//! - [`Proc`], [`floe_bin`], [`alive`], [`children`], [`cmdline`], [`environ`]: child
//!   processes killed when the test ends, the `floe` binary of this build, and what `/proc`
//!   says of a process (live or not, its children, arguments and environment);
//! - [`crash`]: the checkpoints a job's runs left, kills timed against them
//!   ([`crash::kill_at`]) and a seeded random source for the moments;
//! - [`cluster::Cluster`]: `floe jobmanager` and `floe taskmanager`s as real processes.
//!
//! Elsewhere, by kind: the Kafka-protocol test broker (tansu, plain or behind TLS, and
//! librdkafka's mock cluster) and the exactly-once ledger live in
//! `floe_operators::kafka::testing`; the operator harness with a controllable clock in
//! `floe_runtime::harness`; the job manager's state machine is tested without HTTP in
//! `runtime/cluster/src/jobmanager/cluster_tests.rs`, and in process over HTTP with
//! `floe_cluster::jobmanager::JobManager::start`.

pub mod cluster;
pub mod crash;
mod gate;
mod process;
mod wait;

pub use gate::{Gate, GatePass};
pub use process::{alive, children, cmdline, environ, floe_bin, stat, Proc};
pub use wait::{wait_for, wait_until, DEADLINE};
