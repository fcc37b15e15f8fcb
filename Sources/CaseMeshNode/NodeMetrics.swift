import CaseMeshCRDT
import CaseMeshSync
import CaseMeshSyncDriver
import Metrics

/// The node's sync metrics, through swift-metrics: `serve` bootstraps a Prometheus
/// backend and serves it at `/metrics`; elsewhere (tests, `casemesh sync`) they go
/// nowhere. Labels are replica IDs, directions and results: never personal data.
enum NodeMetrics {
    /// Records one finished sync session with `peer`.
    static func record(
        _ outcome: SyncRunner.Outcome, peer: ReplicaID, dialled: Bool, duration: Duration
    ) {
        let peerLabel = ("peer", peer.rawValue)
        let result = outcome.error == nil ? "ok" : "failed"
        Counter(
            label: "casemesh_sync_rounds_total",
            dimensions: [peerLabel, ("direction", dialled ? "dial" : "accept"), ("result", result)]
        ).increment()
        Metrics.Timer(label: "casemesh_sync_duration_seconds", dimensions: [peerLabel], preferredDisplayUnit: .seconds)
            .record(duration: duration)
        let summary = outcome.summary
        for (label, value) in [
            ("casemesh_changes_received_total", summary.changesReceived),
            ("casemesh_changes_applied_total", summary.changesApplied),
            ("casemesh_changes_sent_total", summary.changesSent),
            ("casemesh_changes_refused_total", outcome.refused.count),
        ] where value > 0 {
            Counter(label: label, dimensions: [peerLabel]).increment(by: value)
        }
    }

    /// Records a peer that could not be reached or refused the connection.
    static func recordUnreachable(_ peer: ReplicaID) {
        Counter(
            label: "casemesh_sync_rounds_total",
            dimensions: [("peer", peer.rawValue), ("direction", "dial"), ("result", "unreachable")]
        ).increment()
    }

    /// Records cases purged by the need-to-know pass.
    static func recordPurges(_ count: Int) {
        guard count > 0 else { return }
        Counter(label: "casemesh_purges_total").increment(by: count)
    }
}
