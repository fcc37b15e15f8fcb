import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import CaseMeshSync
import Foundation

/// Valid inputs for each target, to start a fuzzer from (it mutates them).
public enum FuzzSeeds {
    /// A few changes of one case from two replicas, using every operation kind.
    static func changes() throws -> [Change] {
        let dong = try ReplicaID("dong.office/server")
        let senior = try ReplicaID("senior.centre/laptop-1")
        let caseID = try CaseID("case-" + String(repeating: "k", count: 26))
        let opening = Change(
            caseID: caseID, origin: dong, seq: 1, hlc: HybridTimestamp(physical: 1_795_392_000_000),
            context: VersionVector(),
            ops: [
                .insert(CaseField.participants, "dong.office"),
                .assign(CaseField.leadInstitution, .string("dong.office")),
                .assign(CaseField.riskLevel, .string("high")),
            ] + ConsentGrant(recipients: [try InstitutionID("senior.centre")]).ops())
        let note = Change(
            caseID: caseID, origin: senior, seq: 1, hlc: HybridTimestamp(physical: 1_795_392_000_100, logical: 2),
            context: VersionVector([dong: 1]),
            ops: [
                .append(CaseField.notes, "home visit"),
                .assign(FieldKey(entity: "household", field: "size"), .integer(2)),
                .remove(CaseField.tags, "meals"),
            ])
        let redaction = Change(
            caseID: caseID, origin: dong, seq: 2, hlc: HybridTimestamp(physical: 1_795_392_000_200),
            context: VersionVector([dong: 1, senior: 1]),
            ops: [
                .redact(
                    CaseField.notes, LogEntryID(dot: Dot(origin: senior, seq: 1), index: 0)),
                .withheld(
                    FieldKey(entity: "person", instance: "p1", field: "rrnHash"), digest: Array(repeating: 7, count: 32)
                ),
            ])
        return [opening, note, redaction]
    }

    /// Writes seeds into `directory/<target>/`.
    public static func write(into directory: String) throws {
        let changes = try changes()
        let seal = Seal(
            origin: changes[0].origin, number: 1, leafCount: 2, signature: Array(repeating: 1, count: 64),
            digests: [1: Array(repeating: 2, count: 32)])
        let messages: [SyncMessage] = [
            .hello(.init(protocolVersion: 2, schemaVersion: 2, replica: changes[0].origin, logIdentity: "ab12")),
            .pull(.init(logIdentity: "ab12", cursor: 7)),
            .batch(
                .init(
                    logIdentity: "ab12", changes: changes, nextCursor: 9, isFinal: false,
                    leaves: [SealLeaf(seal: 0, leaf: 0), nil, nil], seals: [seal],
                    certificates: [changes[0].origin: [0x30, 0x82, 0x01, 0x0a]])),
            .ack(.init(cursor: 9)), .done, .refusal(.init(reason: "incompatible")),
        ]
        var seeds: [FuzzTarget: [[UInt8]]] = [:]
        seeds[.message] = messages.map { $0.encoded() }
        seeds[.change] = changes.map { $0.encoded() }
        var encoder = CompactChangeEncoder()
        var stream: [UInt8] = []
        for message in messages {
            let body = message.encoded(changes: &encoder)
            let length = UInt32(body.count)
            stream += [
                UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF),
            ]
            stream += body
        }
        seeds[.frames] = [stream]
        let bundle = ChangeBundle(
            schemaVersion: CaseSchema.bundled.version, source: changes[0].origin, recipient: nil,
            createdAtMillis: 1_795_392_000_300, changes: changes.map { $0.encoded() }, leaves: [nil, nil, nil],
            seals: [seal], certificates: [:])
        seeds[.bundle] = [bundle.encoded()]
        for (target, inputs) in seeds {
            let folder = (directory as NSString).appendingPathComponent(target.rawValue)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (index, input) in inputs.enumerated() {
                try Data(input).write(to: URL(fileURLWithPath: folder + "/seed-\(index)"))
            }
        }
    }
}
