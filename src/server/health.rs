//! What the server says about its health: the one-line answer to `health` on the TCP port, and
//! whether it is serving, for `grpc.health.v1.Health` on the gRPC port. Both read the counters
//! and flags, nothing else, so they are answered even while the writer is stuck.

use super::shared::Shared;

/// The one-line answer to `health`.
pub fn health_line(shared: &Shared) -> String {
    let stats = shared.stats();
    let status = if stats.degraded() { "DEGRADED" } else { "OK" };
    // `apps` and `instances` are the connection registry's (`logmill status`), as the loops
    // last published it; `connections` counts every open connection, listed or not yet.
    let listed = shared.connections().counts();
    format!(
        "{status} name={} version={} uptime={}s connections={} records_written={} pending_bytes={} \
         partial_bytes={} shed={} refused_auth={} apps={} instances={} ship_connections={} \
         ship_files={} ship_bytes={} tls_failed={}{}\n",
        shared
            .name()
            .replace(|c: char| c.is_whitespace() || c.is_control(), "_"),
        env!("CARGO_PKG_VERSION"),
        shared.uptime().as_secs(),
        stats.connections(),
        stats.records_written(),
        shared.handoff().pending().pending(),
        stats.partial_bytes(),
        stats.shed(),
        stats.refused_auth(),
        listed.apps,
        listed.instances,
        stats.ship_connections(),
        stats.ship_files_created(),
        stats.ship_bytes(),
        stats.tls_failures(),
        shared
            .forward()
            .health_fields(crate::storage::search::filter::now_ns()),
    )
}

/// Whether the server takes records: not while it shuts down (or this connection does), nor
/// while the writer is DEGRADED.
pub fn serving(shared: &Shared, shutting_down: bool) -> bool {
    !(shutting_down || shared.is_shutting_down() || shared.stats().degraded())
}
