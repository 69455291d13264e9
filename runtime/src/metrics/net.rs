//! Figures of the connections between workers: the connections a worker refused, by
//! reason (`timeout`, `closed`, `oversized`, `malformed`, `bad_mac`, `unexpected`,
//! `duplicate`, `busy`, `impostor`, `io`, `internal`).
//!
//! ```
//! use floe_runtime::metrics::{net, Registry};
//! let before = net::rejected_connections("bad_mac");
//! net::rejected_connection("bad_mac");
//! assert_eq!(net::rejected_connections("bad_mac"), before + 1);
//! let text = Registry::global().render_prometheus();
//! assert!(text.contains("floe_net_rejected_connections_total{reason=\"bad_mac\"}"));
//! ```

use super::Registry;

/// The metric's name.
pub const REJECTED_CONNECTIONS: &str = "floe_net_rejected_connections_total";

/// A worker refused a connection for `reason`.
pub fn rejected_connection(reason: &str) {
    Registry::global()
        .counter(
            REJECTED_CONNECTIONS,
            "Connections to this worker (or from it to another) refused during the handshake, by reason",
            &[("reason", reason)],
        )
        .inc();
}

/// Connections refused so far for `reason`, in this process.
pub fn rejected_connections(reason: &str) -> u64 {
    Registry::global()
        .value(REJECTED_CONNECTIONS, &[("reason", reason)])
        .map_or(0, |v| v as u64)
}
