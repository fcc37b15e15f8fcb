public import CaseMeshCRDT
import Crypto
import Foundation
import GRDB

/// A received change refused because it could not be authenticated, kept aside.
public struct QuarantinedChange: Hashable, Sendable {
    /// The entry's number, for `casemesh quarantine drop`.
    public var id: Int64
    public var caseID: String
    public var origin: String
    public var seq: UInt64
    /// The peer it came from.
    public var sender: String
    public var reason: String
    public var receivedAtMillis: UInt64
    /// How many times the change was refused.
    public var attempts: Int
    /// When the genuine change was applied, if it was.
    public var resolvedAtMillis: UInt64?
    /// Whether it was refused for an unverified signer and keeps what it takes to
    /// verify it again (`casemesh quarantine retry`).
    public var canRetry: Bool
}

/// The leaves of seals.
public enum SealDigest {
    /// What a seal covers of a change: the SHA-256 of its head (case, origin, seq,
    /// HLC, context, operation count) followed by each operation's SHA-256. A change
    /// whose sensitive operations were withheld from a receiver (each replaced by its
    /// digest) has the same leaf, so the origin's seal still verifies.
    public static func leaf(of change: Change) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: change.encodedHead())
        for op in change.ops { hasher.update(data: operation(op)) }
        return Array(hasher.finalize())
    }

    /// The same leaf, read straight from the change's canonical encoding (the head is
    /// its prefix, each operation a slice of it): no re-encoding on the receive path.
    ///
    /// - Throws: ``CRDTError`` when the bytes are not a canonical change encoding.
    public static func leaf(ofEncoded body: [UInt8]) throws(CRDTError) -> [UInt8] {
        var reader = BinaryReader(body)
        try reader.skipBlob()
        try reader.skipBlob()
        for _ in 0..<3 { _ = try reader.readVarint() }
        for _ in 0..<(try reader.readCount(limit: 100_000, "context size")) {
            try reader.skipBlob()
            _ = try reader.readVarint()
        }
        let operations = try reader.readCount(limit: Change.maximumOperations, "operation count")
        var hasher = SHA256()
        hasher.update(data: body[0..<reader.offset])
        for _ in 0..<operations {
            let start = reader.offset
            let tag = try reader.readByte()
            try reader.skipBlob()
            switch tag {
            case 1:
                switch try reader.readByte() {
                case 1: try reader.skipBlob()
                case 2: _ = try reader.readSignedVarint()
                default: _ = try reader.readByte()
                }
            case 2, 3, 4: try reader.skipBlob()
            case 5:
                try reader.skipBlob()
                _ = try reader.readVarint()
                _ = try reader.readVarint()
            case 6:
                // A withheld operation carries the digest of the original.
                hasher.update(data: try reader.readBytes(Seal.digestLength))
                continue
            default: throw reader.failure("unknown operation tag \(tag)")
            }
            hasher.update(data: Array(SHA256.hash(data: body[start..<reader.offset])))
        }
        return Array(hasher.finalize())
    }

    /// The SHA-256 of one operation's encoding (what a withheld operation carries).
    public static func operation(_ op: FieldOperation) -> [UInt8] {
        if case .withheld(_, let digest) = op { return digest }
        return Array(SHA256.hash(data: op.encoded()))
    }
}

/// Signs a seal's message with the node's certificate key (see ``Seal``).
public typealias SealSigner = @Sendable ([UInt8]) throws -> [UInt8]

extension CaseStore {
    /// Seals this node's own changes that are not sealed yet, in log order, at most
    /// ``Seal/maximumLeaves`` per seal, each signed by `sign`.
    ///
    /// Cheap when nothing is new: two reads. The node calls it when it starts and
    /// before it serves a peer, so its changes always leave it sealed.
    ///
    /// - Returns: how many changes were sealed.
    @discardableResult
    public func sealOwnChanges(sign: SealSigner) throws(StoreError) -> Int {
        let own = replicaID
        // The usual case, nothing new: a read, no write transaction.
        let upToDate = try read { db in
            try Bool.fetchOne(
                db,
                sql: """
                    SELECT (SELECT sealedThroughArrival FROM replicaInfo WHERE singleton = 1)
                    >= coalesce((SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1), 1)
                    """) ?? false
        }
        if upToDate { return 0 }
        return try write { db in
            let sealedThrough =
                try Int64.fetchOne(db, sql: "SELECT sealedThroughArrival FROM replicaInfo WHERE singleton = 1") ?? 1
            let end =
                try Int64.fetchOne(
                    db, sql: "SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1") ?? 1
            guard sealedThrough < end else { return 0 }
            defer {
                try? db.execute(
                    sql: "UPDATE replicaInfo SET sealedThroughArrival = ? WHERE singleton = 1", arguments: [end])
            }
            guard
                let ownRef = try Int64.fetchOne(
                    db, sql: "SELECT id FROM replica WHERE name = ?", arguments: [own.rawValue])
            else { return 0 }
            var number = UInt64(
                try Int64.fetchOne(db, sql: "SELECT MAX(number) FROM seal WHERE originRef = ?", arguments: [ownRef])
                    ?? 0)
            var caseKeys: [Int64: String] = [:]
            // The segments holding unsealed changes of this node, decoded.
            var segments: [(id: Int64, entries: [ChangeLogSegment.Entry])] = []
            var pending: [(segment: Int, entry: Int, digest: [UInt8])] = []
            for row in try Row.fetchAll(
                db,
                sql: ChangeLogSegment.segments(from: "?1", columns: "id, firstArrival, body"),
                arguments: [sealedThrough])
            {
                var arrival: Int64 = row[1]
                let entries = try ChangeLogSegment.entries(of: [UInt8](row[2] as Data))
                for (index, entry) in entries.enumerated() {
                    defer { arrival += 1 }
                    guard arrival >= sealedThrough, entry.replicaRef == ownRef, entry.sealRef == 0 else { continue }
                    if caseKeys[entry.caseRef] == nil {
                        caseKeys[entry.caseRef] = try String.fetchOne(
                            db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [entry.caseRef])
                    }
                    guard let caseKey = caseKeys[entry.caseRef] else {
                        throw StoreError(code: .corrupt, message: "the change log names an unknown case")
                    }
                    let canonical = Change.encoded(caseID: caseKey, origin: own.rawValue, rest: entry.rest)
                    pending.append((segments.count, index, SealDigest.leaf(of: try Change(decoding: canonical))))
                }
                segments.append((row[0], entries))
            }
            var start = 0
            while start < pending.count {
                let run = pending[start..<min(start + Seal.maximumLeaves, pending.count)]
                number += 1
                let digests = run.map(\.digest)
                let signature = try sign(Seal.message(origin: own, number: number, leaves: digests))
                try db.execute(
                    sql: "INSERT INTO seal (originRef, number, signature, digests) VALUES (?, ?, ?, ?)",
                    arguments: [ownRef, Int64(number), Data(signature), Data(digests.joined())])
                let sealRef = db.lastInsertedRowID
                for (leaf, item) in run.enumerated() {
                    segments[item.segment].entries[item.entry].sealRef = sealRef
                    segments[item.segment].entries[item.entry].leaf = leaf
                }
                start += run.count
            }
            for index in Set(pending.map(\.segment)) {
                var segment = ChangeLogSegment()
                for entry in segments[index].entries { segment.append(entry) }
                try db.execute(
                    sql: "UPDATE changeSegment SET body = ? WHERE id = ?",
                    arguments: [Data(segment.writer.bytes), segments[index].id])
            }
            return pending.count
        }
    }

    /// Records a node's certificate and public key (raw P-256, 64 bytes) after the
    /// caller verified the certificate against the consortium CA and CRL.
    public func trustSigner(_ replica: ReplicaID, publicKey: [UInt8], certificate: [UInt8]) throws(StoreError) {
        try write { db in
            try db.execute(
                sql: """
                    INSERT INTO signer (replica, publicKey, certificate) VALUES (?, ?, ?)
                    ON CONFLICT (replica) DO UPDATE SET publicKey = excluded.publicKey, certificate = excluded.certificate
                    """,
                arguments: [replica.rawValue, Data(publicKey), Data(certificate)])
        }
    }

    /// The certificates of these signers, as recorded by ``trustSigner(_:publicKey:certificate:)``.
    public func signerCertificates(_ replicas: Set<ReplicaID>) throws(StoreError) -> [ReplicaID: [UInt8]] {
        guard !replicas.isEmpty else { return [:] }
        return try read { db in
            var found: [ReplicaID: [UInt8]] = [:]
            for replica in replicas {
                if let data = try Data.fetchOne(
                    db, sql: "SELECT certificate FROM signer WHERE replica = ?", arguments: [replica.rawValue])
                {
                    found[replica] = [UInt8](data)
                }
            }
            return found
        }
    }

    /// Whether this signer's certificate is recorded, byte for byte.
    public func knowsSigner(_ replica: ReplicaID, certificate: [UInt8]) throws(StoreError) -> Bool {
        try read { db in
            try Data.fetchOne(
                db, sql: "SELECT certificate FROM signer WHERE replica = ?", arguments: [replica.rawValue])
                == Data(certificate)
        }
    }

    /// The changes kept aside (quarantined), oldest first: by default those not
    /// resolved yet (the genuine change has not arrived).
    public func quarantined(includingResolved: Bool = false) throws(StoreError) -> [QuarantinedChange] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, caseKey, origin, seq, sender, reason, receivedAt, attempts, resolvedAt, sealRef
                    FROM quarantine \(includingResolved ? "" : "WHERE resolvedAt IS NULL") ORDER BY id
                    """
            ).map { row in
                QuarantinedChange(
                    id: row[0], caseID: row[1], origin: row[2], seq: UInt64(clamping: row[3] as Int64), sender: row[4],
                    reason: row[5], receivedAtMillis: UInt64(clamping: row[6] as Int64),
                    attempts: row[7], resolvedAtMillis: (row[8] as Int64?).map { UInt64(clamping: $0) },
                    canRetry: (row[9] as Int64?) != nil)
            }
        }
    }

    /// Forgets a quarantine entry (its change stays unapplied; a genuine copy arriving
    /// later applies as usual).
    ///
    /// - Throws: ``StoreError`` `caseNotFound` when there is no entry with that ID.
    public func dropQuarantined(id: Int64) throws(StoreError) {
        let dropped = try write { db -> Int in
            try db.execute(sql: "DELETE FROM quarantine WHERE id = ?", arguments: [id])
            let count = db.changesCount
            try db.execute(
                sql:
                    "DELETE FROM quarantineSeal WHERE id NOT IN (SELECT sealRef FROM quarantine WHERE sealRef IS NOT NULL)"
            )
            return count
        }
        guard dropped > 0 else {
            throw StoreError(code: .caseNotFound, message: "no quarantine entry \(id); see 'casemesh quarantine --all'")
        }
    }

    /// The certificates that came with quarantined changes whose signers this node
    /// could not verify (to verify against the CA before ``retryQuarantined()``).
    public func quarantinedSigners() throws(StoreError) -> [ReplicaID: [UInt8]] {
        try read { db in
            var found: [ReplicaID: [UInt8]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT replica, certificate FROM quarantineSigner") {
                if let replica = try? ReplicaID(row[0] as String) { found[replica] = [UInt8](row[1] as Data) }
            }
            return found
        }
    }

    /// Verifies the quarantined changes again that were refused for an unverified
    /// signer (after its certificate was verified and trusted, see
    /// ``trustSigner(_:publicKey:certificate:)``): what verifies now applies, the
    /// rest stays quarantined with its reason brought up to date.
    ///
    /// - Parameter distrusted: signers whose recorded certificate no longer
    ///   verifies (revoked, expired), with why: their seals stay refused.
    public func retryQuarantined(distrusted: [ReplicaID: String] = [:]) throws(StoreError) -> ApplyReport {
        struct Kept: Sendable {
            var change: Change
            var body: [UInt8]
            var seal: Int64
            var leaf: Int
            var sender: ReplicaID
        }
        let kept: [Kept]
        var seals: [Int64: Seal] = [:]
        (kept, seals) = try read { db in
            var kept: [Kept] = []
            var seals: [Int64: Seal] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT body, sealRef, leaf, sender FROM quarantine
                    WHERE resolvedAt IS NULL AND sealRef IS NOT NULL ORDER BY id
                    """)
            {
                guard let change = try? Change(decoding: [UInt8](row[0] as Data)),
                    let sender = try? ReplicaID(row[3] as String)
                else { continue }
                kept.append(
                    Kept(change: change, body: [UInt8](row[0] as Data), seal: row[1], leaf: row[2], sender: sender))
            }
            for row in try Row.fetchAll(db, sql: "SELECT id, origin, number, signature, digests FROM quarantineSeal") {
                guard let origin = try? ReplicaID(row[1] as String) else { continue }
                let all = [UInt8](row[4] as Data)
                var digests: [Int: [UInt8]] = [:]
                for leaf in 0..<(all.count / Seal.digestLength) {
                    digests[leaf] = Array(all[leaf * Seal.digestLength..<(leaf + 1) * Seal.digestLength])
                }
                seals[row[0]] = Seal(
                    origin: origin, number: UInt64(clamping: row[2] as Int64), leafCount: digests.count,
                    signature: [UInt8](row[3] as Data), digests: digests)
            }
            return (kept, seals)
        }
        var total = ApplyReport()
        for (sender, group) in Dictionary(grouping: kept, by: \.sender) {
            var order: [Int64] = []
            var leaves: [SealLeaf?] = []
            for item in group {
                if !order.contains(item.seal) { order.append(item.seal) }
                leaves.append(SealLeaf(seal: order.firstIndex(of: item.seal)!, leaf: item.leaf))
            }
            // Each seal goes with the digests of the leaves not retried here.
            let batchSeals = order.map { ref -> Seal in
                var seal = seals[ref]!
                for item in group where item.seal == ref { seal.digests[item.leaf] = nil }
                return seal
            }
            let report = try apply(
                group.map { ($0.change, $0.body) },
                authentication: BundleSeals(leaves: leaves, seals: batchSeals, sender: sender, distrusted: distrusted))
            total.add(report)
        }
        return total
    }
}

extension CaseStore {
    /// The most unresolved quarantine entries a store keeps.
    public static let maximumQuarantineRows: Int64 = 100_000
    /// The most bytes of refused change bodies it keeps (beyond, entries keep none).
    public static let maximumQuarantineBytes: Int64 = 64 << 20
    /// The most changes held for a newer case schema, and their bytes: past them a
    /// change is refused for now (fetched again after the upgrade), not dropped.
    public static let maximumHeldRows: Int64 = 200_000
    public static let maximumHeldBytes: Int64 = 256 << 20
}

extension ApplySession {
    /// Checks the seals of a received batch and sorts its changes: those a valid seal
    /// covers, with the stored seal's ID and their leaf; the others are quarantined
    /// (with why) and left out.
    ///
    /// - Returns: for each change, its `seal.id` and leaf, or `nil` when quarantined.
    func authenticate(
        _ changes: [Change], bodies: [[UInt8]], leaves: [SealLeaf?], seals: [Seal], sender: ReplicaID,
        certificates: [ReplicaID: [UInt8]] = [:], distrusted: [ReplicaID: String] = [:], report: inout ApplyReport
    ) throws -> [(sealRef: Int64, leaf: Int)?] {
        var result: [(sealRef: Int64, leaf: Int)?] = Array(repeating: nil, count: changes.count)
        var reasons: [Int: String] = [:]
        var members: [[Int]] = Array(repeating: [], count: seals.count)
        for index in changes.indices {
            guard let leaf = leaves.indices.contains(index) ? leaves[index] : nil, seals.indices.contains(leaf.seal)
            else {
                reasons[index] = Self.unsealed
                continue
            }
            members[leaf.seal].append(index)
        }
        var keptSeals: [Int: Int64] = [:]
        for (number, seal) in seals.enumerated() where !members[number].isEmpty {
            // A signer whose certificate was revoked (or expired) is refused from then
            // on, whatever it sealed and whenever it says it wrote it: a stolen laptop
            // can claim any time.
            let refusal =
                try distrusted[seal.origin].map { "\(Self.revokedSigner) \(seal.origin) no longer verifies: \($0)" }
                ?? check(seal, members: members[number], changes: changes, bodies: bodies, leaves: leaves)
            if let refusal {
                for index in members[number] { reasons[index] = refusal }
                if refusal.hasPrefix(Self.unverifiedSigner) {
                    // It may verify once the signer's certificate does: keep what that takes.
                    keptSeals[number] = try keepSeal(
                        seal, members: members[number], changes: changes, bodies: bodies, leaves: leaves,
                        certificate: certificates[seal.origin])
                }
                continue
            }
            let sealRef = try storeSeal(seal, members: members[number], changes: changes, leaves: leaves)
            for index in members[number] { result[index] = (sealRef, leaves[index]!.leaf) }
        }
        for (index, reason) in reasons.sorted(by: { $0.key < $1.key }) {
            // The pull cursor must not pass a change refused for a reason that may go:
            // no seal yet, a signer not verified yet, or a seal that does not check
            // (a relay that altered the change, or covered it with a seal of its own,
            // spoils the seal's genuine changes too; a clean copy comes next time, and
            // the sender must not count them delivered). Only a revoked signer's
            // seals are passed for good.
            if !reason.hasPrefix(Self.revokedSigner) { report.heldBack += 1 }
            try quarantine(changes[index], body: bodies[index], reason: reason, report: &report)
            if let leaf = leaves.indices.contains(index) ? leaves[index] : nil, let kept = keptSeals[leaf.seal] {
                try database.execute(
                    sql: "UPDATE quarantine SET sealRef = ?, leaf = ? WHERE caseKey = ? AND origin = ? AND seq = ?",
                    arguments: [
                        kept, leaf.leaf, changes[index].caseID.rawValue, changes[index].origin.rawValue,
                        Int64(clamping: changes[index].seq),
                    ])
            }
        }
        return result
    }

    /// Why a seal does not authenticate its changes, or `nil` when it does.
    private func check(
        _ seal: Seal, members: [Int], changes: [Change], bodies: [[UInt8]], leaves: [SealLeaf?]
    ) throws -> String? {
        guard seal.leafCount > 0, seal.leafCount <= Seal.maximumLeaves else {
            return "a seal of \(seal.leafCount) leaves"
        }
        guard
            let keyData = try Data.fetchOne(
                database.cachedStatement(sql: "SELECT publicKey FROM signer WHERE replica = ?"),
                arguments: [seal.origin.rawValue]),
            let key = try? P256.Signing.PublicKey(rawRepresentation: keyData)
        else { return "\(Self.unverifiedSigner) \(seal.origin)" }
        var digests: [[UInt8]?] = Array(repeating: nil, count: seal.leafCount)
        for (leaf, digest) in seal.digests {
            guard digests.indices.contains(leaf), digest.count == Seal.digestLength else { return "a malformed seal" }
            digests[leaf] = digest
        }
        var fromMembers: Set<Int> = []
        for index in members {
            guard changes[index].origin == seal.origin else { return "sealed by \(seal.origin), not by its origin" }
            let leaf = leaves[index]!.leaf
            guard digests.indices.contains(leaf) else { return "a malformed seal" }
            let digest = (try? SealDigest.leaf(ofEncoded: bodies[index])) ?? SealDigest.leaf(of: changes[index])
            if fromMembers.contains(leaf) {
                // The same change twice (a bundle that repeats one) is one leaf.
                guard digests[leaf] == digest else { return "two different changes under one leaf of a seal" }
                continue
            }
            guard digests[leaf] == nil else { return "a malformed seal" }
            digests[leaf] = digest
            fromMembers.insert(leaf)
        }
        let complete = digests.compactMap { $0 }
        guard complete.count == seal.leafCount else { return "a seal with leaves missing" }
        guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: seal.signature),
            key.isValidSignature(
                signature, for: Seal.message(origin: seal.origin, number: seal.number, leaves: complete))
        else {
            // Either the changes (or the seal) were altered on the way, or the seal was
            // made with a key its signer has since replaced (`casemesh-ca renew --new-key`).
            return "the signature of \(seal.origin)'s seal \(seal.number) does not verify with its current "
                + "certificate: the changes were altered, or sealed with a key \(seal.origin) has since replaced"
        }
        return nil
    }

    static let unverifiedSigner = "no verified certificate for its signer"
    static let revokedSigner = "the certificate of"
    static let unsealed = "not signed by its origin"

    /// Keeps a seal whose signer could not be verified, with every leaf's digest and
    /// the certificate that came with it, for ``CaseStore/retryQuarantined()``.
    private func keepSeal(
        _ seal: Seal, members: [Int], changes: [Change], bodies: [[UInt8]], leaves: [SealLeaf?],
        certificate: [UInt8]?
    ) throws -> Int64? {
        guard seal.leafCount > 0, seal.leafCount <= Seal.maximumLeaves else { return nil }
        var digests = seal.digests
        for index in members {
            digests[leaves[index]!.leaf] =
                (try? SealDigest.leaf(ofEncoded: bodies[index])) ?? SealDigest.leaf(of: changes[index])
        }
        guard (0..<seal.leafCount).allSatisfy({ digests[$0]?.count == Seal.digestLength }) else { return nil }
        if let certificate, certificate.count <= 16_384 {
            try database.execute(
                sql: "INSERT OR REPLACE INTO quarantineSigner (replica, certificate) VALUES (?, ?)",
                arguments: [seal.origin.rawValue, Data(certificate)])
        }
        try database.execute(
            sql: """
                INSERT INTO quarantineSeal (origin, number, signature, digests) VALUES (?, ?, ?, ?)
                ON CONFLICT (origin, number) DO UPDATE SET signature = excluded.signature, digests = excluded.digests
                """,
            arguments: [
                seal.origin.rawValue, Int64(clamping: seal.number), Data(seal.signature),
                Data((0..<seal.leafCount).flatMap { digests[$0]! }),
            ])
        return try Int64.fetchOne(
            database, sql: "SELECT id FROM quarantineSeal WHERE origin = ? AND number = ?",
            arguments: [seal.origin.rawValue, Int64(clamping: seal.number)])
    }

    /// Stores a verified seal with all its digests (once), returning its `seal.id`.
    private func storeSeal(_ seal: Seal, members: [Int], changes: [Change], leaves: [SealLeaf?]) throws -> Int64 {
        let originRef = try replicaRef(seal.origin)
        if let existing = try Int64.fetchOne(
            database.cachedStatement(sql: "SELECT id FROM seal WHERE originRef = ? AND number = ?"),
            arguments: [originRef, Int64(seal.number)])
        {
            return existing
        }
        var digests = seal.digests
        for index in members { digests[leaves[index]!.leaf] = SealDigest.leaf(of: changes[index]) }
        let all = (0..<seal.leafCount).flatMap { digests[$0] ?? [] }
        try database.cachedStatement(
            sql: "INSERT INTO seal (originRef, number, signature, digests) VALUES (?, ?, ?, ?)"
        )
        .execute(arguments: [originRef, Int64(seal.number), Data(seal.signature), Data(all)])
        return database.lastInsertedRowID
    }
}
