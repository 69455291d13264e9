//! Checkpoint figures per job: completed and failed counts, and the duration, size and id of
//! the last completed checkpoint. The checkpoint coordinator reports here, once per
//! checkpoint.
//!
//! ```
//! use floe_runtime::metrics::{checkpoints, Registry};
//! checkpoints::completed("checkpoints-doc", 4, std::time::Duration::from_millis(12), 2048);
//! checkpoints::failed("checkpoints-doc");
//! let r = Registry::global();
//! let job = [("job", "checkpoints-doc")];
//! assert_eq!(r.value("floe_checkpoints_completed_total", &job), Some(1.0));
//! assert_eq!(r.value("floe_checkpoints_failed_total", &job), Some(1.0));
//! assert_eq!(r.value("floe_last_checkpoint_id", &job), Some(4.0));
//! assert_eq!(r.value("floe_checkpoint_duration_ms", &job), Some(12.0));
//! assert_eq!(r.value("floe_checkpoint_size_bytes", &job), Some(2048.0));
//! ```

use std::time::Duration;

use super::Registry;

/// Checkpoint `id` of `job` completed after `duration` with `bytes` of state.
pub fn completed(job: &str, id: u64, duration: Duration, bytes: u64) {
    let r = Registry::global();
    let labels = [("job", job)];
    r.counter(
        "floe_checkpoints_completed_total",
        "Checkpoints the job completed",
        &labels,
    )
    .inc();
    r.gauge(
        "floe_checkpoint_duration_ms",
        "Time from trigger to completion of the job's last completed checkpoint, in ms",
        &labels,
    )
    .set(duration.as_millis().min(i64::MAX as u128) as i64);
    r.gauge(
        "floe_checkpoint_size_bytes",
        "State size of the job's last completed checkpoint, in bytes",
        &labels,
    )
    .set(bytes.min(i64::MAX as u64) as i64);
    r.gauge(
        "floe_last_checkpoint_id",
        "Id of the job's last completed checkpoint",
        &labels,
    )
    .set(id.min(i64::MAX as u64) as i64);
}

/// A checkpoint of `job` failed (timed out and was abandoned).
pub fn failed(job: &str) {
    Registry::global()
        .counter(
            "floe_checkpoints_failed_total",
            "Checkpoints of the job that failed or timed out",
            &[("job", job)],
        )
        .inc();
}
