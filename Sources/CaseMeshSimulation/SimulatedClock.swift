import CaseMeshStore
import Foundation

/// A wall clock the simulation moves: shared simulated time plus this replica's
/// skew (a laptop hours ahead).
final class SimulatedClock: WallClock, @unchecked Sendable {
    private let lock = NSLock()
    private var base: UInt64
    private var skew: Int64 = 0

    init(start: UInt64) { base = start }

    func nowMillis() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return UInt64(max(0, Int64(base) + skew))
    }

    func advance(by millis: UInt64) {
        lock.lock()
        base += millis
        lock.unlock()
    }

    func setSkew(_ millis: Int64) {
        lock.lock()
        skew = millis
        lock.unlock()
    }
}
