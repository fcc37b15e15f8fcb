public import CaseMeshCRDT

/// When each peer is due for its next sync: one interval (scaled by a jitter of
/// 0.8…1.2, so that nodes do not dial in lockstep) after its last attempt started,
/// longer (2^failures × the interval, at most 32×) while it keeps failing.
///
/// Pure and clock-free (times are seconds since any fixed origin), so the rule can be
/// tested without waiting: rounds start every interval ± jitter, never at twice it.
public struct SyncSchedule: Sendable {
    public let intervalSeconds: Double
    private var due: [ReplicaID: Double] = [:]

    public init(intervalSeconds: Double) {
        self.intervalSeconds = max(0.001, intervalSeconds)
    }

    /// Whether `peer` should be synced now (a peer never tried is due at once).
    public func isDue(_ peer: ReplicaID, at now: Double) -> Bool {
        (due[peer] ?? -.infinity) <= now
    }

    /// Records an attempt that started at `start` after which the peer has failed
    /// `failures` times in a row; `jitter` (0.8…1.2) scales the wait.
    public mutating func attempted(_ peer: ReplicaID, failures: Int, startedAt start: Double, jitter: Double) {
        let backoff = Double(1 << min(max(failures, 0), 5))
        due[peer] = start + intervalSeconds * backoff * min(max(jitter, 0.8), 1.2)
    }

    /// How long to sleep before the next peer falls due: at least a millisecond, so
    /// the loop never spins, at most one interval when no peer is scheduled.
    public func nextWait(at now: Double) -> Double {
        guard let earliest = due.values.min() else { return intervalSeconds }
        return max(0.001, earliest - now)
    }
}
