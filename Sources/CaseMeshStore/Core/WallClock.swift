import Foundation

/// The source of wall-clock time, injected so tests and simulations are reproducible.
public protocol WallClock: Sendable {
    /// Milliseconds since the Unix epoch.
    func nowMillis() -> UInt64
}

/// The operating system's clock.
public struct SystemWallClock: WallClock {
    public init() {}

    public func nowMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }
}

/// A clock that always reads the same instant, for tests and benchmarks.
public struct FixedWallClock: WallClock {
    public var millis: UInt64

    public init(millis: UInt64) { self.millis = millis }

    public func nowMillis() -> UInt64 { millis }
}
