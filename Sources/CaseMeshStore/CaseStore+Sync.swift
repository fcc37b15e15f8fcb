public import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// A page of the change log read for one peer.
public struct LogPage: Hashable, Sendable {
    /// The changes, in arrival order.
    public var changes: [Change]
    /// The arrival number the next page starts from.
    public var nextCursor: UInt64
    /// Whether the page reaches the end of the log.
    public var isFinal: Bool
    /// For each change, where it sits in ``seals`` (`nil`: not sealed yet).
    public var leaves: [SealLeaf?] = []
    /// The seals that authenticate the changes.
    public var seals: [Seal] = []
    /// The certificates of the seals' signers.
    public var certificates: [ReplicaID: [UInt8]] = [:]
    /// This node's own changes the page carries whole, per case: once the receiver
    /// holds the page durably (it acknowledged it, or a bundle was written), those
    /// have gone out (see ``CaseStore/recordDelivered(_:)``).
    public var ownChangesSent = OwnChangesSent()
}

/// The highest sequence number of this node's own changes sent whole, per case (an
/// opaque record of what a page or bundle carried out).
public struct OwnChangesSent: Hashable, Sendable {
    var maximumSeq: [Int64: UInt64] = [:]

    public init() {}

    /// Whether nothing of this node's own went out.
    public var isEmpty: Bool { maximumSeq.isEmpty }

    /// Adds what another page carried.
    public mutating func formUnion(_ other: OwnChangesSent) {
        maximumSeq.merge(other.maximumSeq, uniquingKeysWith: max)
    }
}

/// The seals that came with a pulled batch: every change must be covered by a
/// valid one from a signer whose certificate this node verified.
public struct PulledSeals: Sendable {
    public var leaves: [SealLeaf?]
    public var seals: [Seal]
    /// The signers' certificates that came with the batch (kept with changes whose
    /// signer could not be verified, so they can be verified again later).
    public var certificates: [ReplicaID: [UInt8]]
    /// Signers whose certificate no longer verifies (revoked, expired), with why:
    /// their seals are refused whatever this node recorded of them before.
    public var distrusted: [ReplicaID: String]

    public init(
        leaves: [SealLeaf?], seals: [Seal], certificates: [ReplicaID: [UInt8]] = [:],
        distrusted: [ReplicaID: String] = [:]
    ) {
        self.leaves = leaves
        self.seals = seals
        self.certificates = certificates
        self.distrusted = distrusted
    }
}

/// The seals that came with a bundle, and who made it.
public struct BundleSeals: Sendable {
    public var leaves: [SealLeaf?]
    public var seals: [Seal]
    public var sender: ReplicaID
    public var certificates: [ReplicaID: [UInt8]]
    /// As ``PulledSeals/distrusted``.
    public var distrusted: [ReplicaID: String]

    public init(
        leaves: [SealLeaf?], seals: [Seal], sender: ReplicaID, certificates: [ReplicaID: [UInt8]] = [:],
        distrusted: [ReplicaID: String] = [:]
    ) {
        self.leaves = leaves
        self.seals = seals
        self.sender = sender
        self.certificates = certificates
        self.distrusted = distrusted
    }
}

/// What this node knows of one peer.
public struct PeerState: Hashable, Sendable {
    public var peer: ReplicaID
    public var logIdentity: String
    public var pullCursor: UInt64
    public var lastSuccessAtMillis: UInt64?
    public var lastAttemptAtMillis: UInt64?
    public var lastError: String?
    public var changesPulled: UInt64
}

extension CaseStore {
    /// The identity of this store's change log, which peers' cursors refer to.
    public func logIdentity() throws(StoreError) -> String {
        try read { db in try String.fetchOne(db, sql: "SELECT logIdentity FROM replicaInfo WHERE singleton = 1") ?? "" }
    }

    /// The arrival number the next change will get: the end of the log.
    public func logEnd() throws(StoreError) -> UInt64 {
        try read { db in
            UInt64(
                try Int64.fetchOne(
                    db, sql: "SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1")
                    ?? 1)
        }
    }

    /// Reads the changes from arrival `cursor` on that `institution` may receive.
    ///
    /// A change goes to an institution only if the institution is among its case's
    /// participants now. When a change in the page adds the institution to a case's
    /// participants, the case's earlier history (before `cursor`) comes first, so a
    /// new participant receives everything (the receiver skips what it already holds).
    ///
    /// - Parameters:
    ///   - cursor: the first arrival number wanted (1 for the whole log).
    ///   - institution: the receiving institution, from its certificate.
    ///   - maxChanges: a soft bound on the page (a newly shared case's history may exceed it).
    ///   - maxBytes: likewise, in encoded bytes.
    ///   - memo: what earlier pages of the same session learned; reused while the log
    ///     has not grown since.
    ///   - sealedOnly: end the page before the first change of this node's own that
    ///     is not sealed yet (written beside a serving node since it last sealed), so
    ///     that no peer receives it unsealed; it goes in a later page once sealed.
    public func logPage(
        from cursor: UInt64, for institution: InstitutionID, maxChanges: Int = 4096, maxBytes: Int = 1 << 20,
        memo: LogPageMemo = LogPageMemo(), sealedOnly: Bool = false
    ) throws(StoreError) -> LogPage {
        let schema = schema
        let now = clock.nowMillis()
        let local = replicaID
        return try read { db in
            var reader = try LogPageReader(
                db: db, schema: schema, institution: institution, nowMillis: now, memo: memo)
            reader.local = local
            reader.sealedOnly = sealedOnly
            defer { reader.close() }
            return try reader.page(from: cursor, maxChanges: maxChanges, maxBytes: maxBytes)
        }
    }

    /// Every change (or, for an institution, what it may receive) with the seals that
    /// authenticate them and their signers' certificates: what a bundle carries.
    public func exportPage(for institution: InstitutionID?) throws(StoreError) -> LogPage {
        let schema = schema
        let now = clock.nowMillis()
        let own = replicaID.institution
        let local = replicaID
        return try read { db in
            var reader = try LogPageReader(db: db, schema: schema, institution: institution ?? own, nowMillis: now)
            reader.local = local
            reader.unrestricted = institution == nil
            defer { reader.close() }
            return try reader.page(from: 1, maxChanges: .max, maxBytes: .max)
        }
    }

    /// Every change held here from arrival `cursor` on, in arrival order, whole (the
    /// change feed of this node's own API; purged cases' changes are gone).
    public func feedPage(from cursor: UInt64, maxChanges: Int) throws(StoreError) -> LogPage {
        let schema = schema
        let now = clock.nowMillis()
        let own = replicaID.institution
        return try read { db in
            var reader = try LogPageReader(db: db, schema: schema, institution: own, nowMillis: now)
            reader.unrestricted = true
            defer { reader.close() }
            return try reader.page(from: cursor, maxChanges: maxChanges, maxBytes: 4 << 20)
        }
    }

    /// Where this node's pull of `peer`'s log resumes.
    public func pullCursor(for peer: ReplicaID) throws(StoreError) -> (logIdentity: String, cursor: UInt64) {
        try read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT logIdentity, pullCursor FROM peerState WHERE peer = ?", arguments: [peer.rawValue])
            else { return ("", 1) }
            return (row[0], UInt64(max(1, row[1] as Int64)))
        }
    }

    /// Applies a batch pulled from `peer` and records the new pull cursor in the same
    /// transaction, so an interrupted sync resumes exactly after the last durable batch.
    ///
    /// - Parameters:
    ///   - checkpoint: whether to write out materialized state now (the last batch of a
    ///     sync) or leave it to a later checkpoint (the log's tail is replayed meanwhile).
    /// - Returns: what happened to the changes; undecodable ones are in `rejected`.
    ///   - holdCursor: keep the stored cursor where it is whatever this batch holds (an
    ///     earlier batch of the session held a change back, see ``ApplyReport/heldBack``).
    public func applyPulled(
        _ changes: [Change], from peer: ReplicaID, logIdentity: String, nextCursor: UInt64, checkpoint: Bool,
        authentication: PulledSeals? = nil, holdCursor: Bool = false
    ) throws(StoreError) -> ApplyReport {
        // Nothing new and the cursor where it was (an idle sync): no transaction, no fsync.
        if changes.isEmpty, try pullCursor(for: peer) == (logIdentity, nextCursor) {
            let nothingToCheckpoint = try read { db in try LogTail(db).isEmpty }
            if !checkpoint || nothingToCheckpoint { return ApplyReport() }
        }
        // The canonical encoding, rebuilt: exactly the bytes the origin wrote.
        let bodies = changes.map { $0.encoded() }
        let order = changes.indices.sorted { Change.causalOrder(changes[$0], changes[$1]) }
        let now = clock.nowMillis()
        let peerName = peer.rawValue
        let pulled = Int64(changes.count)
        let institution = replicaID.institution
        return try withApplySession(wallMillis: now, checkpoint: checkpoint) { session in
            var report = ApplyReport()
            session.sender = peer
            var located: [(sealRef: Int64, leaf: Int)?] = Array(repeating: (0, 0), count: changes.count)
            if let authentication {
                located = try session.authenticate(
                    changes, bodies: bodies, leaves: authentication.leaves, seals: authentication.seals, sender: peer,
                    certificates: authentication.certificates, distrusted: authentication.distrusted, report: &report)
            }
            let dropped = try session.screenPurged(changes, institution: institution, report: &report)
            for index in order where !dropped.contains(index) {
                guard let place = located[index] else { continue }
                try session.receive(
                    changes[index], body: bodies[index], sealRef: place.sealRef, leaf: place.leaf, report: &report)
            }
            try session.drainPending(report: &report)
            // A change refused only for now must come again: the cursor stays before
            // it (the batch is pulled again next time; what applied is skipped then).
            var cursor = nextCursor
            if holdCursor || report.heldBack > 0 {
                report.cursorHeld = true
                let row = try Row.fetchOne(
                    session.database, sql: "SELECT logIdentity, pullCursor FROM peerState WHERE peer = ?",
                    arguments: [peerName])
                let stored: UInt64 = UInt64(clamping: max(1, (row?["pullCursor"] as Int64?) ?? 1))
                cursor = (row?["logIdentity"] as String?) == logIdentity ? min(stored, nextCursor) : 1
            }
            report.durableCursor = cursor
            try session.database.execute(
                sql: """
                    INSERT INTO peerState (peer, logIdentity, pullCursor, lastAttemptAt, changesPulled) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (peer) DO UPDATE SET logIdentity = excluded.logIdentity, pullCursor = excluded.pullCursor,
                    lastAttemptAt = excluded.lastAttemptAt, changesPulled = peerState.changesPulled + excluded.changesPulled
                    """,
                arguments: [peerName, logIdentity, Int64(clamping: cursor), Int64(clamping: now), pulled])
            return report
        }
    }

    /// Records how a sync attempt with `peer` ended.
    ///
    /// - Note: This bookkeeping commits without waiting for the disk (synchronous
    ///   NORMAL for this one transaction): after a power cut a peer's last-success
    ///   time may be a sync behind, never its data or cursor, which commit with FULL.
    /// - Parameters:
    ///   - error: why the sync failed (`nil`: it finished).
    ///   - problem: what went wrong in a sync that finished (changes refused), kept as
    ///     the peer's last error for `casemesh peers` without hiding the success.
    public func recordSyncOutcome(peer: ReplicaID, error: String?, problem: String? = nil) throws(StoreError) {
        let now = Int64(clock.nowMillis())
        let peerName = peer.rawValue
        try Self.wrapDatabaseErrors {
            try writer.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
                defer { try? db.execute(sql: "PRAGMA synchronous = FULL") }
                try db.inTransaction {
                    try db.execute(
                        sql: """
                            INSERT INTO peerState (peer, lastAttemptAt, lastSuccessAt, lastError) VALUES (?, ?, ?, ?)
                            ON CONFLICT (peer) DO UPDATE SET lastAttemptAt = excluded.lastAttemptAt,
                            lastSuccessAt = coalesce(excluded.lastSuccessAt, peerState.lastSuccessAt),
                            lastError = excluded.lastError
                            """,
                        arguments: [peerName, now, error == nil ? now : nil, error ?? problem])
                    // A restored replica has caught up with this peer (see restoreHold).
                    if error == nil {
                        try db.execute(sql: "DELETE FROM restoreHold WHERE peer = ?", arguments: [peerName])
                    }
                    return .commit
                }
            }
        }
    }

    /// What this node knows of every peer it has synced with.
    /// Forgets a peer: its pull cursor and sync record. Returns whether there was one.
    public func forgetPeer(_ peer: ReplicaID) throws(StoreError) -> Bool {
        try write { db in
            try db.execute(sql: "DELETE FROM peerState WHERE peer = ?", arguments: [peer.rawValue])
            let forgotten = db.changesCount > 0
            // A peer gone for good is not waited for by a restored replica.
            try db.execute(sql: "DELETE FROM restoreHold WHERE peer = ?", arguments: [peer.rawValue])
            return forgotten || db.changesCount > 0
        }
    }

    public func peerStates() throws(StoreError) -> [PeerState] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM peerState ORDER BY peer").map { row in
                PeerState(
                    peer: try ReplicaID(row["peer"] as String), logIdentity: row["logIdentity"],
                    pullCursor: UInt64(max(1, row["pullCursor"] as Int64)),
                    lastSuccessAtMillis: (row["lastSuccessAt"] as Int64?).map { UInt64($0) },
                    lastAttemptAtMillis: (row["lastAttemptAt"] as Int64?).map { UInt64($0) },
                    lastError: row["lastError"], changesPulled: UInt64(row["changesPulled"] as Int64))
            }
        }
    }
}

/// What a sync session's pages of the log have learned so far: which cases the
/// puller may see and their decoded IDs. A new change may add or remove a
/// participant or a consent, so when the log's end moves the entitlements of the
/// cases its new changes touched are dropped (all of them past
/// ``maximumRecheck`` new changes). The memo lives for one session, whose pages
/// judge consents that run out by the time its first page of each case was read.
public final class LogPageMemo: @unchecked Sendable {
    private let lock = NSLock()
    fileprivate var logEnd: Int64 = -1
    fileprivate var entitled: [Int64: Set<DataCategory>] = [:]
    fileprivate var caseIDs: [Int64: CaseID] = [:]
    /// Past this many new changes since the memo was made, it is dropped whole
    /// rather than checked change by change.
    static let maximumRecheck: Int64 = 20_000
    /// Entitlements kept at most (the memo lives for one sync session).
    static let maximumCases = 500_000

    public init() {}

    fileprivate func withLock<T>(_ body: (LogPageMemo) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(self)
    }
}

/// Reads pages of the change log for one institution (see ``CaseStore/logPage(from:for:maxChanges:maxBytes:)``).
struct LogPageReader {
    let db: Database
    let schema: CaseSchema
    let institution: InstitutionID
    let tail: LogTail
    let coder: ReplicaTableCoder
    private var caseKeys: [Int64: String] = [:]
    private var entitled: [Int64: Set<DataCategory>]
    private let participants = CaseField.participants
    private let gateStatement: Statement
    private let nowMillis: UInt64
    /// Every case, whole (a bundle for all cases): no entitlement applies.
    var unrestricted = false
    /// The replica reading its own log (whose own changes a page records as sent).
    var local: ReplicaID?
    /// Whether a page ends before the first of `local`'s own changes not sealed yet.
    var sealedOnly = false

    private let memo: LogPageMemo

    init(
        db: Database, schema: CaseSchema, institution: InstitutionID, nowMillis: UInt64,
        memo: LogPageMemo = LogPageMemo()
    ) throws {
        self.db = db
        self.nowMillis = nowMillis
        self.memo = memo
        self.schema = schema
        self.institution = institution
        tail = try LogTail(db)
        coder = try ReplicaTableCoder(db)
        // Case IDs never change. A case's entitlement depends on its own fields only,
        // so when the log has grown since the memo was made only the cases the new
        // changes touched are worked out again (a node serving the API grows its log
        // with every read's access entry, and a pull would otherwise redo every
        // case's entitlement at every page).
        let end =
            try Int64.fetchOne(db, sql: "SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1")
            ?? 1
        let known = memo.withLock { memo in memo.logEnd }
        let touched: Set<Int64>? =
            known < 0 || end < known || end - known > LogPageMemo.maximumRecheck
            ? nil : try Self.casesWritten(db, from: known, to: end)
        (caseIDs, entitled) = memo.withLock { memo in
            if memo.logEnd != end {
                if let touched, memo.logEnd == known, memo.entitled.count <= LogPageMemo.maximumCases {
                    for caseRef in touched { memo.entitled[caseRef] = nil }
                } else {
                    memo.entitled = [:]
                }
                memo.logEnd = end
            }
            return (memo.caseIDs, memo.entitled)
        }
        gateStatement = try db.cachedStatement(sql: CaseStore.gateFieldsSQL)
    }

    /// The cases of the changes at arrivals `from..<to`.
    private static func casesWritten(_ db: Database, from: Int64, to: Int64) throws -> Set<Int64> {
        let segments = try Row.fetchCursor(
            db, sql: ChangeLogSegment.segments(from: "?1", columns: "firstArrival, body"), arguments: [from])
        var cases: Set<Int64> = []
        while let row = try segments.next() {
            var position = row[0] as Int64
            guard position < to else { break }
            for entry in try ChangeLogSegment.entries(of: [UInt8](row[1] as Data)) {
                defer { position += 1 }
                if position >= from && position < to { cases.insert(entry.caseRef) }
            }
        }
        return cases
    }

    /// Releases the prepared statement and hands what it learned to the memo.
    func close() {
        let entitled = entitled
        let caseIDs = caseIDs
        memo.withLock { memo in
            memo.entitled.merge(entitled) { _, new in new }
            memo.caseIDs.merge(caseIDs) { _, new in new }
        }
    }

    private mutating func caseKey(_ caseRef: Int64) throws -> String {
        if let key = caseKeys[caseRef] { return key }
        guard
            let key = try String.fetchOne(
                db.cachedStatement(sql: "SELECT caseKey FROM caseRecord WHERE id = ?"), arguments: [caseRef])
        else { throw StoreError(code: .corrupt, message: "the change log names an unknown case") }
        caseKeys[caseRef] = key
        return key
    }

    /// Whether the institution may receive the case now (``Entitlement``): the
    /// checkpointed gate fields, with the log's tail replayed on top when the tail
    /// touches the case.
    private mutating func isEntitled(_ caseRef: Int64) throws -> Bool {
        try categories(caseRef).contains(.general)
    }

    /// The data categories the institution may receive of the case now.
    private mutating func categories(_ caseRef: Int64) throws -> Set<DataCategory> {
        if unrestricted { return Set(DataCategory.allCases) }
        if let known = entitled[caseRef] { return known }
        var fields = try CaseStore.gateFields(caseRef: caseRef, statement: gateStatement, coder: coder)
        if !tail.changes(ofCase: caseRef).isEmpty {
            var version = VersionVector()
            try tail.replay(ofCase: caseRef, fields: &fields, version: &version, schema: schema)
        }
        let answer = Entitlement(of: institution, fields: fields, schema: schema, nowMillis: nowMillis).categories
        entitled[caseRef] = answer
        return answer
    }

    /// The change as this institution may receive it: operations on fields of a
    /// category its consent does not cover are withheld (replaced by their digest, so
    /// the origin's seal still verifies). `nil` when this node holds the change with
    /// operations withheld that the institution may see: it must get it whole from a
    /// node that has it.
    private func restrict(_ change: Change, to categories: Set<DataCategory>) -> Change? {
        CaseStore.restrict(change, to: categories, schema: schema)
    }

    private var caseIDs: [Int64: CaseID]

    /// A stored change, decoded with its case and origin from the interned tables.
    private mutating func decode(_ entry: ChangeLogSegment.Entry) throws -> Change {
        guard let origin = coder.names[entry.replicaRef] else {
            throw StoreError(code: .corrupt, message: "the change log names an unknown replica")
        }
        let caseID: CaseID
        if let known = caseIDs[entry.caseRef] {
            caseID = known
        } else {
            caseID = try CaseID(try caseKey(entry.caseRef))
            caseIDs[entry.caseRef] = caseID
        }
        return try Change(caseID: caseID, origin: origin, decodingRest: entry.rest, fieldKeys: fieldKeys)
    }

    /// The field names met in this page's changes, parsed once.
    private let fieldKeys = FieldKeyCache()

    mutating func page(from cursor: UInt64, maxChanges: Int, maxBytes: Int) throws -> LogPage {
        let start = max(1, cursor)
        // The fast path of an idle sync: nothing after the cursor, nothing to read.
        let end =
            try Int64.fetchOne(db, sql: "SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1")
            ?? 1
        if UInt64(end) <= start { return LogPage(changes: [], nextCursor: start, isFinal: true) }
        let firstSegment =
            try Int64.fetchOne(
                db, sql: "SELECT id FROM changeSegment WHERE firstArrival <= ? ORDER BY firstArrival DESC LIMIT 1",
                arguments: [Int64(start)]) ?? 0
        let segments = try Row.fetchCursor(
            db, sql: "SELECT firstArrival, body FROM changeSegment WHERE id >= ? ORDER BY id", arguments: [firstSegment]
        )
        var changes: [Located] = []
        var bytes = 0
        var next = start
        let localRef = local.flatMap { own in coder.names.first(where: { $0.value == own })?.key }
        var isFinal = true
        var lastSeal: Int64 = 0
        // Cases the institution joins in this page with a history before the cursor.
        var joined: Set<Int64> = []
        // Changes that removed the institution from a case, found in this page.
        var removals: [(caseRef: Int64, change: Located, arrival: UInt64)] = []
        scan: while let row = try segments.next() {
            var position = UInt64(row[0] as Int64)
            let entries = try ChangeLogSegment.entries(of: [UInt8](row[1] as Data))
            for entry in entries {
                defer { position += 1 }
                guard position >= start else { continue }
                // Full: stop, but not inside a seal, so a seal travels whole (no digests
                // of its other changes to send).
                if changes.count >= maxChanges || bytes >= maxBytes, entry.sealRef == 0 || entry.sealRef != lastSeal {
                    isFinal = false
                    break scan
                }
                if sealedOnly, entry.sealRef == 0, !entry.isBlank, entry.replicaRef == localRef {
                    // Written since this node last sealed: the peer gets it next time.
                    isFinal = true
                    break scan
                }
                lastSeal = entry.sealRef
                next = position + 1
                guard !entry.isBlank else { continue }
                guard try isEntitled(entry.caseRef) else {
                    // Not a participant now, but this change may be the one that removed
                    // it: that change, with what it had seen, still goes to it, so a
                    // removal concurrent with its own edits cannot strand them.
                    if byteSequence(entry.rest, contains: institutionBytes) {
                        let change = try decode(entry)
                        if removesInstitution(change) {
                            removals.append(
                                (entry.caseRef, (change, entry.sealRef, entry.leaf, entry.caseRef), position))
                        }
                    }
                    continue
                }
                let change = try decode(entry)
                if start > 1, !joined.contains(entry.caseRef), joinsWithHistory(change) {
                    joined.insert(entry.caseRef)
                }
                guard let allowed = restrict(change, to: try categories(entry.caseRef)) else { continue }
                bytes += entry.rest.count + 48
                changes.append((allowed, entry.sealRef, entry.leaf, entry.caseRef))
            }
        }
        // The institution joined these cases in this page: their history from before
        // the cursor goes first (what came after it is in the page already).
        var history: [Located] = []
        for item in try self.history(ofCases: joined, before: start) {
            if let allowed = restrict(item.change, to: try categories(item.caseRef)) {
                history.append((allowed, item.sealRef, item.leaf, item.caseRef))
            }
        }
        var departures: [Located] = []
        for removal in removals {
            let seen = try self.history(ofCases: [removal.caseRef], before: removal.arrival).filter {
                removal.change.change.context.contains($0.change.dot)
            }
            // Only an institution the removal actually took out (entitled in what the
            // removal had seen) learns of it; others learn nothing of the case. What it
            // learns is that it has no right to the case, and nothing else: the removal
            // alone, as a departure notice (no history, no field it did not hold).
            // Or it was ever made a participant here (a grant concurrent with the
            // removal: it may have received the case from a node that had the grant
            // and not yet the removal).
            if try wasEntitled(in: seen.map(\.change)) || everGranted(removal.caseRef) {
                let item = removal.change
                departures.append((CaseStore.departureNotice(item.change), item.sealRef, item.leaf, item.caseRef))
            }
        }
        return try sealedPage(departures + history + changes, nextCursor: next, isFinal: isFinal)
    }

    /// A change read from the log with the seal that authenticates it.
    typealias Located = (change: Change, sealRef: Int64, leaf: Int, caseRef: Int64)

    /// The page with the seals of its changes: each seal once, with the digests of
    /// the leaves whose changes are not in the page, and the certificates of their
    /// signers.
    private func sealedPage(_ items: [Located], nextCursor: UInt64, isFinal: Bool) throws -> LogPage {
        var seals: [Seal] = []
        var sealIndex: [Int64: Int] = [:]
        var included: [Int64: Set<Int>] = [:]
        for item in items where item.sealRef != 0 { included[item.sealRef, default: []].insert(item.leaf) }
        var leaves: [SealLeaf?] = []
        leaves.reserveCapacity(items.count)
        let select = try db.cachedStatement(sql: "SELECT originRef, number, signature, digests FROM seal WHERE id = ?")
        for item in items {
            guard item.sealRef != 0 else {
                leaves.append(nil)
                continue
            }
            if sealIndex[item.sealRef] == nil {
                guard let row = try Row.fetchOne(select, arguments: [item.sealRef]), let origin = coder.names[row[0]]
                else { throw StoreError(code: .corrupt, message: "the change log names an unknown seal") }
                let all = [UInt8](row[3] as Data)
                let count = all.count / Seal.digestLength
                var digests: [Int: [UInt8]] = [:]
                let present = included[item.sealRef] ?? []
                for leaf in 0..<count where !present.contains(leaf) {
                    digests[leaf] = Array(all[leaf * Seal.digestLength..<(leaf + 1) * Seal.digestLength])
                }
                sealIndex[item.sealRef] = seals.count
                seals.append(
                    Seal(
                        origin: origin, number: UInt64(row[1] as Int64), leafCount: count,
                        signature: [UInt8](row[2] as Data), digests: digests))
            }
            leaves.append(SealLeaf(seal: sealIndex[item.sealRef]!, leaf: item.leaf))
        }
        var certificates: [ReplicaID: [UInt8]] = [:]
        for origin in Set(seals.map(\.origin)) {
            if let data = try Data.fetchOne(
                db.cachedStatement(sql: "SELECT certificate FROM signer WHERE replica = ?"),
                arguments: [origin.rawValue])
            {
                certificates[origin] = [UInt8](data)
            }
        }
        var own = OwnChangesSent()
        for item in items where item.change.origin == local && !item.change.ops.contains(where: \.isWithheld) {
            own.maximumSeq[item.caseRef] = max(own.maximumSeq[item.caseRef] ?? 0, item.change.seq)
        }
        return LogPage(
            changes: items.map(\.change), nextCursor: nextCursor, isFinal: isFinal, leaves: leaves, seals: seals,
            certificates: certificates, ownChangesSent: own)
    }

    /// Every change of the given cases that arrived before `arrival`, in order: one
    /// scan of the log for all of them.
    private mutating func history(ofCases cases: Set<Int64>, before arrival: UInt64) throws -> [Located] {
        guard !cases.isEmpty else { return [] }
        var result: [Located] = []
        let segments = try Row.fetchCursor(
            db, sql: "SELECT firstArrival, body FROM changeSegment WHERE firstArrival < ? ORDER BY id",
            arguments: [Int64(arrival)])
        while let row = try segments.next() {
            var position = UInt64(row[0] as Int64)
            for entry in try ChangeLogSegment.entries(of: [UInt8](row[1] as Data)) {
                defer { position += 1 }
                if position < arrival && !entry.isBlank && cases.contains(entry.caseRef) {
                    result.append((try decode(entry), entry.sealRef, entry.leaf, entry.caseRef))
                }
            }
        }
        return result
    }

    private var institutionBytes: [UInt8] { Array(institution.rawValue.utf8) }

    /// Whether a change held here ever added the institution to the case's participants.
    private func everGranted(_ caseRef: Int64) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(
                sql: "SELECT EXISTS (SELECT 1 FROM participantGrant WHERE caseRef = ? AND institution = ?)"),
            arguments: [caseRef, institution.rawValue]) ?? false
    }

    /// Whether this change removes the institution from its case's participants or
    /// from a consent's recipients.
    private func removesInstitution(_ change: Change) -> Bool {
        change.ops.contains { op in
            if case .remove(let field, let element) = op {
                return element == institution.rawValue && (field == participants || field.field == "recipients")
                    && Entitlement.isGate(field)
            }
            return false
        }
    }

    /// Whether the institution was entitled to the case in the state these changes
    /// (in arrival order, causally ordered) build.
    private func wasEntitled(in changes: [Change]) throws -> Bool {
        var fields: [FieldKey: FieldState] = [:]
        for change in changes.sorted(by: Change.causalOrder) {
            for (index, op) in change.ops.enumerated() where Entitlement.isGate(op.field) {
                var state = fields[op.field] ?? FieldState.empty(for: op)
                try state.apply(op, index: index, of: change, semantics: schema.setSemantics(for: op.field))
                fields[op.field] = state
            }
        }
        // Expiry is judged now, as the sender judges it.
        return Entitlement(of: institution, fields: fields, schema: schema, nowMillis: nowMillis).receivesCase
    }

    /// Whether this change may give the institution a case it did not have, after
    /// earlier changes of the case (an opening change has no history to send): it
    /// adds the institution to the participants or to a consent's recipients, widens
    /// what a consent covers, sets a consent's basis or end, or hands the institution
    /// the lead.
    private func joinsWithHistory(_ change: Change) -> Bool {
        // An access log is opened by every institution that writes its first entry
        // to it, each with a first change of its own that has seen nothing: the log's
        // entries from before still go to it, or its later ones would wait for ever.
        let opensAccessLog = change.ops.contains(.insert(CaseField.tags, CaseStore.accessLogTag))
        guard !(change.seq == 1 && change.context.sortedEntries.isEmpty) || opensAccessLog else { return false }
        return change.ops.contains { op in
            switch op {
            case .insert(let field, let element):
                guard Entitlement.isGate(field) else { return false }
                return element == institution.rawValue || field.field == "categories"
            case .assign(let field, let value):
                if field == Entitlement.lead { return value == .string(institution.rawValue) }
                // A consent's basis or end may make it valid again.
                return field.entity == "consent" && (field.field == "validUntil" || field.field == "basis")
            default:
                return false
            }
        }
    }

}

private let allCategories = DataCategory.allCases.count

extension CaseStore {
    /// A change as an institution covered for `categories` may receive it (see
    /// ``LogPageReader``): uncovered operations withheld, or `nil` when operations
    /// already withheld here are ones it may see.
    static func restrict(_ change: Change, to categories: Set<DataCategory>, schema: CaseSchema) -> Change? {
        if categories.count == allCategories && !change.ops.contains(where: \.isWithheld) {
            return change
        }
        var restricted = change
        for (index, op) in change.ops.enumerated() {
            // A field from a newer schema has a category this node cannot know: it
            // goes only to an institution covered for every category.
            let covered =
                schema.knows(op.field)
                ? categories.contains(schema.category(of: op.field)) : categories.count == allCategories
            // A withheld access-log entry was destroyed at the end of its retention
            // period: nobody has more of it, so it goes on as it is.
            if op.isWithheld, op.field != CaseStore.accessLogField {
                if covered { return nil }
            } else if !covered {
                restricted.ops[index] = .withheld(op.field, digest: SealDigest.operation(op))
            }
        }
        return restricted
    }

    /// A change as a departure notice: the operations on the fields the need-to-know
    /// rule reads (``Entitlement/isRuleField(_:)``) as they are, every other operation
    /// withheld as its digest, so the origin's seal still verifies and the departing
    /// institution learns only that its right to the case ended.
    public static func departureNotice(_ change: Change) -> Change {
        var notice = change
        for (index, op) in change.ops.enumerated() where !op.isWithheld && !Entitlement.isRuleField(op.field) {
            notice.ops[index] = .withheld(op.field, digest: SealDigest.operation(op))
        }
        return notice
    }

    /// Whether a change is no more than a departure notice for `institution`: it
    /// takes the institution out, and every operation it carries whole is on a field
    /// the rule reads.
    static func isDepartureNotice(_ change: Change, for institution: InstitutionID) -> Bool {
        Entitlement.removes(institution, in: change)
            && change.ops.allSatisfy { $0.isWithheld || Entitlement.isRuleField($0.field) }
    }

    /// The gate fields of a case (see ``Entitlement/isGate(_:)``), as checkpointed.
    static let gateFieldsSQL = """
        SELECT fieldName.name, fieldState.state FROM fieldState JOIN fieldName ON fieldName.id = fieldState.fieldRef
        WHERE fieldState.caseRef = ?
        AND (fieldName.name IN ('case.participants', 'case.leadInstitution') OR fieldName.name LIKE 'consent#%')
        """

    static func gateFields(
        caseRef: Int64, statement: Statement, coder: ReplicaTableCoder
    ) throws -> [FieldKey: FieldState] {
        var fields: [FieldKey: FieldState] = [:]
        let rows = try Row.fetchCursor(statement, arguments: [caseRef])
        while let row = try rows.next() {
            let key = try FieldKey(parsing: row[0] as String)
            fields[key] = try FieldState(decoding: [UInt8](row[1] as Data), coder: coder)
        }
        return fields
    }

    /// Forgets how far this node has pulled every peer's log, so the next sync with
    /// each pulls it whole again (what it already holds is skipped). For a full
    /// resync after a clock was fixed or a store restored.
    public func forgetPullCursors() throws(StoreError) {
        try write { db in try db.execute(sql: "UPDATE peerState SET pullCursor = 1, logIdentity = ''") }
    }

}

/// Whether `needle` occurs in `haystack` (a cheap test before decoding a change).
private func byteSequence(_ haystack: [UInt8], contains needle: [UInt8]) -> Bool {
    guard let first = needle.first, haystack.count >= needle.count else { return false }
    var index = 0
    let last = haystack.count - needle.count
    while index <= last {
        if haystack[index] == first && haystack[index..<index + needle.count].elementsEqual(needle) { return true }
        index += 1
    }
    return false
}
