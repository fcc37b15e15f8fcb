import CaseMeshCRDT
import CaseMeshSync
import CaseMeshTestSupport
import Testing

let sampleChanges = RandomHistory(seed: 77).changes

@Suite struct SyncMessageTests {
    static let messages: [SyncMessage] = [
        .hello(
            .init(
                protocolVersion: 2, schemaVersion: 1, replica: try! ReplicaID("dong.office/server"), logIdentity: "ab12"
            )),
        .pull(.init(logIdentity: "ab12", cursor: 42)),
        .batch(.init(logIdentity: "ab12", changes: Array(sampleChanges.prefix(3)), nextCursor: 99, isFinal: true)),
        .batch(
            .init(
                logIdentity: "ab12", changes: Array(sampleChanges.prefix(3)), nextCursor: 99, isFinal: false,
                leaves: [SealLeaf(seal: 0, leaf: 2), nil, SealLeaf(seal: 0, leaf: 0)],
                seals: [
                    Seal(
                        origin: try! ReplicaID("dong.office/server"), number: 7, leafCount: 4,
                        signature: Array(repeating: 9, count: 64),
                        digests: [1: Array(repeating: 1, count: 32), 3: Array(repeating: 3, count: 32)])
                ],
                certificates: [try! ReplicaID("dong.office/server"): [0x30, 0x82, 0x01]])),
        .ack(.init(cursor: 99)),
        .done,
        .refusal(.init(reason: "incompatible")),
    ]

    @Test(arguments: messages)
    func messagesRoundTrip(message: SyncMessage) throws {
        #expect(try SyncMessage(decoding: message.encoded()) == message)
    }

    @Test func malformedFramesAreErrorsNotCrashes() {
        var generator = SeededGenerator(seed: 8)
        for message in Self.messages {
            let bytes = message.encoded()
            for cut in 0..<bytes.count {
                #expect(throws: CRDTError.self) { try SyncMessage(decoding: Array(bytes[..<cut])) }
            }
            #expect(throws: CRDTError.self) { try SyncMessage(decoding: bytes + [0]) }
        }
        for _ in 0..<2000 {
            let noise = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
            _ = try? SyncMessage(decoding: noise)
        }
        #expect(throws: CRDTError.self) { try SyncMessage(decoding: [77]) }
    }

    @Test func batchesShareTheConnectionsStringTableAndRoundTrip() throws {
        var encoder = CompactChangeEncoder()
        var decoder = CompactChangeDecoder()
        var sizes: [Int] = []
        for chunk in stride(from: 0, to: sampleChanges.count, by: 5) {
            let batch = SyncMessage.batch(
                .init(
                    logIdentity: "x", changes: Array(sampleChanges[chunk..<min(chunk + 5, sampleChanges.count)]),
                    nextCursor: 1,
                    isFinal: false))
            let bytes = batch.encoded(changes: &encoder)
            sizes.append(bytes.count)
            #expect(try SyncMessage(decoding: bytes, changes: &decoder) == batch)
        }
        let canonical = sampleChanges.reduce(0) { $0 + $1.encoded().count }
        #expect(sizes.reduce(0, +) < canonical / 2, "strings travel once per connection")
    }

    @Test func aReferenceToAStringNeverDefinedIsRefused() {
        var encoder = CompactChangeEncoder()
        let first = SyncMessage.batch(
            .init(logIdentity: "x", changes: [sampleChanges[0]], nextCursor: 1, isFinal: false))
        let second = SyncMessage.batch(
            .init(logIdentity: "x", changes: [sampleChanges[1]], nextCursor: 2, isFinal: false))
        _ = first.encoded(changes: &encoder)
        let dependent = second.encoded(changes: &encoder)
        var fresh = CompactChangeDecoder()
        #expect(throws: CRDTError.self, "the second batch refers to strings the first defined") {
            try SyncMessage(decoding: dependent, changes: &fresh)
        }
    }
}

@Suite struct SyncSessionTests {
    let local = SyncSession.Local(replica: try! ReplicaID("dong.office/server"), logIdentity: "local")
    let peer = try! ReplicaID("senior.centre/server")

    func session() -> SyncSession {
        var session = SyncSession(
            configuration: .init(schemaVersion: 1, window: 2), local: local, peer: peer, pullFrom: .start)
        _ = session.start()
        return session
    }

    var hello: SyncMessage {
        .hello(.init(protocolVersion: 2, schemaVersion: 1, replica: peer, logIdentity: "remote"))
    }

    func isFailure(_ actions: [SyncSession.Action]) -> Bool {
        actions.contains { if case .fail = $0 { return true } else { return false } }
    }

    @Test func messagesBeforeHelloOrOutOfTurnAreRefused() {
        var first = session()
        #expect(isFailure(first.receive(.ack(.init(cursor: 1)))))
        var second = session()
        _ = second.receive(hello)
        #expect(isFailure(second.receive(.ack(.init(cursor: 5)))), "ack for nothing sent")
        var third = session()
        _ = third.receive(hello)
        #expect(isFailure(third.receive(hello)), "hello twice")
        var fourth = session()
        _ = fourth.receive(hello)
        #expect(
            isFailure(fourth.receive(.batch(.init(logIdentity: "other", changes: [], nextCursor: 2, isFinal: false)))))
    }

    @Test func anOlderProtocolIsRefusedNamingBothVersionsButSchemasMayDiffer() {
        var older = session()
        let actions = older.receive(
            .hello(.init(protocolVersion: 1, schemaVersion: 1, replica: peer, logIdentity: "remote")))
        #expect(
            actions.contains(
                .send(
                    .refusal(
                        .init(
                            reason:
                                "incompatible peer: the peer speaks sync protocol 1, this node 2: upgrade casemesh on the peer"
                        )))))
        #expect(older.isEnded)
        // Another case schema is no reason to refuse: the session goes on.
        var newer = session()
        _ = newer.receive(.hello(.init(protocolVersion: 2, schemaVersion: 7, replica: peer, logIdentity: "remote")))
        #expect(!newer.isEnded)
        #expect(newer.summary.peerSchemaVersion == 7)
    }

    @Test func serverKeepsAtMostTheWindowInFlight() {
        var session = session()
        _ = session.receive(hello)
        var actions = session.receive(.pull(.init(logIdentity: "local", cursor: 1)))
        #expect(actions == [.loadPage(cursor: 1)])
        actions = session.pageLoaded(.init(changes: [sampleChanges[0]], nextCursor: 2, isFinal: false))
        #expect(actions.last == .loadPage(cursor: 2))
        actions = session.pageLoaded(.init(changes: [sampleChanges[1]], nextCursor: 3, isFinal: false))
        #expect(actions.count == 1, "two pages in flight: wait for an ack")
        actions = session.receive(.ack(.init(cursor: 2)))
        #expect(actions == [.loadPage(cursor: 3)])
    }

    @Test func pullerAcksOnlyAfterTheBatchIsApplied() {
        var session = session()
        _ = session.receive(hello)
        let batch = SyncMessage.Batch(logIdentity: "remote", changes: [sampleChanges[0]], nextCursor: 7, isFinal: true)
        #expect(session.receive(.batch(batch)) == [.applyBatch(batch)])
        let actions = session.batchApplied(1)
        #expect(actions == [.send(.ack(.init(cursor: 7))), .send(.done)])
        #expect(session.currentPullCursor == .init(logIdentity: "remote", cursor: 7))
    }
}
