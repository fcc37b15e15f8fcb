public import CaseMeshCRDT
public import CaseMeshStore
public import CaseMeshSync

/// Runs one sync session against the local store over any message transport: the
/// async wrapper of ``SyncDriver``, which does the session's work.
///
/// The transport is two things: the messages arriving from the peer, in order, and
/// a way to send one. The mutual-TLS connection is one such transport; the tests'
/// in-memory pipe is another.
public struct SyncRunner: Sendable {
    public let store: CaseStore
    /// How sessions read, apply, sign and verify.
    public var settings = SyncDriver.Settings()

    public typealias Outcome = SyncDriver.Outcome
    public typealias Authentication = SyncDriver.Authentication

    public init(store: CaseStore) {
        self.store = store
    }

    /// Runs a session with `peer` (as its certificate names it) to its end.
    ///
    /// - Parameters:
    ///   - inbound: the peer's messages; its end means the connection closed.
    ///   - send: sends one message to the peer.
    public func run<Inbound: AsyncSequence & Sendable>(
        peer: ReplicaID, inbound: Inbound, send: @Sendable (SyncMessage) async throws -> Void
    ) async -> Outcome where Inbound.Element == SyncMessage {
        var driver = SyncDriver(store: store, peer: peer, settings: settings)
        var iterator = inbound.makeAsyncIterator()
        while true {
            switch await driver.next() {
            case .send(let message):
                do {
                    try await send(message)
                } catch {
                    driver.connectionLost(settings.describe(error))
                }
            case .awaitMessage:
                do {
                    if let message = try await iterator.next() {
                        driver.receive(message)
                    } else {
                        driver.connectionLost("the peer closed the connection")
                    }
                } catch {
                    driver.connectionLost(settings.describe(error))
                }
            case .ended(let outcome):
                return outcome
            }
        }
    }
}
