/// A hybrid logical clock (Kulkarni et al., 2014) with an injected wall clock.
///
/// The clock advances on every local change (``tick(wallMillis:)``) and on every
/// received change (``observe(_:wallMillis:)``), so a change always carries a timestamp
/// later than every change its origin had seen. A received timestamp further ahead of
/// the local wall clock than ``maximumDriftMillis`` is refused: a laptop with a wrong
/// clock must not win every write forever.
///
/// - Important: The wall clock is passed in as a parameter; this type never reads the
///   system time, so every run is reproducible.
public struct HybridLogicalClock: Hashable, Sendable {
    /// The latest timestamp this clock has issued or observed.
    public private(set) var latest: HybridTimestamp
    /// How far ahead of the local wall clock a received timestamp may be.
    public var maximumDriftMillis: UInt64

    /// The default bound on clock drift between replicas: 15 minutes.
    public static let defaultMaximumDriftMillis: UInt64 = 15 * 60 * 1000

    public init(latest: HybridTimestamp = .zero, maximumDriftMillis: UInt64 = defaultMaximumDriftMillis) {
        self.latest = latest
        self.maximumDriftMillis = maximumDriftMillis
    }

    /// Issues a timestamp for a local event, later than every timestamp seen so far.
    ///
    /// - Parameter wallMillis: the local wall clock, in milliseconds since the epoch.
    /// - Returns: the new timestamp.
    public mutating func tick(wallMillis: UInt64) -> HybridTimestamp {
        if wallMillis > latest.physical {
            latest = HybridTimestamp(physical: wallMillis, logical: 0)
        } else if latest.logical == .max {
            latest = HybridTimestamp(physical: latest.physical + 1, logical: 0)
        } else {
            latest.logical += 1
        }
        return latest
    }

    /// Checks that a received timestamp is not too far ahead of the local wall clock.
    ///
    /// - Throws: ``CRDTError`` with code `clockTooFarAhead`.
    public func validate(_ remote: HybridTimestamp, wallMillis: UInt64) throws(CRDTError) {
        let bound = wallMillis.addingReportingOverflow(maximumDriftMillis)
        if !bound.overflow && remote.physical > bound.partialValue {
            let aheadSeconds = (remote.physical - wallMillis) / 1000
            throw CRDTError(
                code: .clockTooFarAhead,
                message: "timestamp \(remote) is \(aheadSeconds) s ahead of the local clock "
                    + "(at most \(maximumDriftMillis / 1000) s allowed)"
            )
        }
    }

    /// Merges a received timestamp into the clock after validating it.
    ///
    /// - Throws: ``CRDTError`` with code `clockTooFarAhead`; the clock is unchanged then.
    public mutating func observe(_ remote: HybridTimestamp, wallMillis: UInt64) throws(CRDTError) {
        try validate(remote, wallMillis: wallMillis)
        if remote > latest { latest = remote }
    }
}
