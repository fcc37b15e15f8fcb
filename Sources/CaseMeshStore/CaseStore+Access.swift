public import CaseMeshCRDT
import CaseMeshModel
import Crypto
import Foundation

/// What someone did with a case's data through a node.
public enum AccessAction: String, Codable, Sendable, CaseIterable {
    case open, read, write, export
}

/// One entry of a case's access log.
public struct AccessRecord: Hashable, Sendable, Codable {
    public var action: AccessAction
    /// The account that acted (the operating-system user running the tool, or the
    /// name given with `--actor`).
    public var actor: String
    public var purpose: String
    /// The command or API that made the access.
    public var via: String
    /// When the access happened, for an entry recorded later than that (kept aside
    /// while the disk was full, see ``CaseStore/read(_:recording:)``); otherwise the
    /// entry's own timestamp is the time.
    public var occurredAtMillis: UInt64?

    public init(action: AccessAction, actor: String, purpose: String, via: String, occurredAtMillis: UInt64? = nil) {
        self.action = action
        self.actor = actor
        self.purpose = purpose
        self.via = via
        self.occurredAtMillis = occurredAtMillis
    }

    /// Refuses an entry whose texts could not be shown safely on another node's
    /// terminal or screen: empty, longer than 200 characters, or holding control
    /// characters (an escape sequence written here would run on the lead's terminal).
    public func validate() throws(StoreError) {
        for (name, text) in [("actor", actor), ("purpose", purpose), ("via", via)] {
            guard !text.isEmpty, text.count <= 200 else {
                throw StoreError(
                    code: .invalidWrite, message: "the access record's \(name) must be 1 to 200 characters")
            }
            guard !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw StoreError(code: .invalidWrite, message: "the access record's \(name) holds a control character")
            }
        }
    }
}

/// An access-log entry as a node holds it: the record, and who, where and when.
public struct AccessEntry: Hashable, Sendable {
    public var record: AccessRecord
    /// The node that recorded it (its institution is the part before `/`).
    public var node: ReplicaID
    public var hlc: HybridTimestamp

    /// When the access happened (milliseconds since 1970).
    public var occurredAtMillis: UInt64 { record.occurredAtMillis ?? hlc.physical }
}

extension CaseStore {
    /// The case that holds another case's access log.
    ///
    /// Every read and write is a change appended to a companion case, not to the case
    /// itself: reading a case does not change it, and the log replicates under its
    /// own rule. The companion's lead is the case's lead institution, so the log goes
    /// to the lead; the institutions that made accesses are its participants with a
    /// statutory basis (PIPA's duty to keep access records), so each keeps its own.
    /// Its ID is derived from the case's, so every node finds the same companion.
    public static func accessLogCase(of caseID: CaseID) -> CaseID {
        let digest = SHA256.hash(data: Array("casemesh access log v1 \(caseID.rawValue)".utf8))
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        var bits = digest.makeIterator()
        var characters = "case-"
        var buffer: UInt32 = 0
        var available = 0
        while characters.count < 31 {
            if available < 5 {
                buffer = (buffer << 8) | UInt32(bits.next() ?? 0)
                available += 8
            }
            available -= 5
            characters.append(alphabet[Int((buffer >> UInt32(available)) & 31)])
        }
        // Built from the alphabet CaseID accepts, 26 characters after the prefix.
        return try! CaseID(characters)
    }

    static let accessLogField = CaseField.accessLog
    static let accessLogTag = "access-log"

    /// Whether a case is the access log of another (see ``accessLogCase(of:)``).
    static func isAccessLog(_ snapshot: CaseSnapshot) -> Bool {
        if case .set(let tags)? = snapshot.fields[CaseField.tags] {
            return tags.contains(accessLogTag, .addWins)
        }
        return false
    }

    /// Appends an entry to a case's access log (see ``accessLogCase(of:)``).
    ///
    /// - Throws: ``StoreError`` `caseNotFound` when the case is not held here.
    public func recordAccess(to caseID: CaseID, _ record: AccessRecord) throws(StoreError) {
        try recordAccess(to: [caseID], record)
    }

    /// Appends the same entry to the access logs of several cases, in one transaction.
    ///
    /// On a full disk the entry goes to the reserve kept beside the database (see
    /// `AccessSpill`), synced before this returns, and into the access logs as soon as
    /// the store can write again; so a read stays possible and still is never
    /// unrecorded. When the reserve is used up too, this throws and the caller must
    /// not show the data.
    public func recordAccess(to caseIDs: [CaseID], _ record: AccessRecord) throws(StoreError) {
        let writes = try accessLogWrites(for: caseIDs, record)
        guard !writes.isEmpty else { return }
        // A restored replica makes no change until it has synced again (see
        // restoreHold): its reads are recorded in the reserve meanwhile, and move into
        // the access logs with their times once it may write.
        if let spill, try !restoreHold().isEmpty {
            try spill.append(
                .init(caseIDs: caseIDs.map(\.rawValue), record: record, occurredAtMillis: clock.nowMillis()))
            return
        }
        try moveSpilledAccess()
        let grouped = accessCommits.commit(writes) { batch in
            try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { session in
                // Two reads of a case never read before both saw its log as new.
                var opened: Set<CaseID> = []
                for var write in batch {
                    if opened.contains(write.companion) { write.isNew = false }
                    opened.insert(write.companion)
                    try Self.commit([write], in: session)
                }
            }
        }
        if grouped { return }
        do {
            try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { session in
                try Self.commit(writes, in: session)
            }
        } catch  where error.isDiskFull {
            guard let spill else { throw error }
            try spill.append(
                .init(caseIDs: caseIDs.map(\.rawValue), record: record, occurredAtMillis: clock.nowMillis()))
        }
    }

    /// One access-log entry to append: the companion case and the writes that make it.
    struct AccessLogWrite: Sendable {
        var companion: CaseID
        var ops: [FieldOperation]
        var isNew: Bool
    }

    /// The writes that append `record` to the access logs of `caseIDs`.
    ///
    /// - Parameter leads: the lead institution of cases not held yet (a case being
    ///   opened in the same transaction); the others' leads are read from the store.
    func accessLogWrites(
        for caseIDs: [CaseID], _ record: AccessRecord, leads: [CaseID: String] = [:]
    ) throws(StoreError) -> [AccessLogWrite] {
        try record.validate()
        let entry: String
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            entry = String(decoding: try encoder.encode(record), as: UTF8.self)
        } catch {
            throw StoreError(code: .invalidWrite, message: "cannot encode the access record: \(error)")
        }
        let own = replicaID.institution
        let schema = schema
        // Only the fields the entry depends on: the case's lead and tags, the log's
        // participants (a whole snapshot would decode every entry of the log).
        let held: [(lead: String?, isLog: Bool, companionKnown: Bool?)?] = try read { db in
            let tail = try LogTail(db)
            let coder = try ReplicaTableCoder(db)
            return try caseIDs.map { caseID in
                var lead: String?
                var isLog = false
                if leads[caseID] == nil {
                    guard
                        let fields = try Self.fields(
                            db, of: caseID, named: ["case.leadInstitution", "case.tags"], tail: tail, schema: schema,
                            coder: coder)
                    else { return nil }
                    if case .register(let register)? = fields[Entitlement.lead],
                        case .string(let name)? = register.value
                    {
                        lead = name
                    }
                    if case .set(let tags)? = fields[CaseField.tags] {
                        isLog = tags.contains(Self.accessLogTag, .addWins)
                    }
                }
                let companion = try Self.fields(
                    db, of: Self.accessLogCase(of: caseID), named: ["case.participants"], tail: tail, schema: schema,
                    coder: coder)
                let known = companion.map { fields -> Bool in
                    if case .set(let participants)? = fields[Entitlement.participants] {
                        return participants.contains(own.rawValue, .addWins)
                    }
                    return false
                }
                return (lead, isLog, known)
            }
        }
        var writes: [AccessLogWrite] = []
        for (caseID, found) in zip(caseIDs, held) {
            var lead = own.rawValue
            if let known = leads[caseID] {
                lead = known
            } else {
                guard let found else {
                    _ = try snapshot(of: caseID)  // throws why: not held, or purged and when
                    throw StoreError(code: .caseNotFound, message: "no case \(caseID) on this replica")
                }
                // An access log's own reads are not logged again.
                if found.isLog { continue }
                if let name = found.lead { lead = name }
            }
            let companion = Self.accessLogCase(of: caseID)
            var ops: [FieldOperation] = [.append(Self.accessLogField, entry)]
            let known = found?.companionKnown ?? nil
            if known != true {
                // The first entry this institution writes: it joins the log's participants
                // under the statutory basis for keeping access records.
                var opening: [FieldOperation] = [
                    .insert(Entitlement.participants, lead),
                    .insert(CaseField.tags, Self.accessLogTag),
                ]
                if known == nil { opening.insert(.assign(Entitlement.lead, .string(lead)), at: 0) }
                opening += ConsentGrant(
                    instance: "access-log", recipients: [own], basis: "personal-information-protection-act"
                ).ops()
                ops = opening + ops
            }
            writes.append(AccessLogWrite(companion: companion, ops: ops, isNew: known == nil))
        }
        return writes
    }

    /// Commits access-log writes inside an apply session (the caller's transaction).
    static func commit(_ writes: [AccessLogWrite], in session: ApplySession) throws {
        for write in writes {
            _ = try session.commitLocal(
                caseID: write.companion, origin: session.receiver!, ops: write.ops, isNewCase: write.isNew)
        }
    }

    /// Reads a case for a person, recording the read in its access log first (the
    /// entry is durable before any of the case is returned).
    ///
    /// - Throws: ``StoreError`` `caseNotFound` when the case is not held here, and
    ///   `withdrawn` when this institution's right to it has ended (it is kept only
    ///   until its own edits have gone out, and shown to nobody).
    ///
    /// On a full disk the read still happens (see `recordAccess(to:_:)`):
    /// no read goes unrecorded, but none is refused while the reserve lasts.
    public func read(_ caseID: CaseID, recording record: AccessRecord) throws(StoreError) -> CaseSnapshot {
        try requireEntitled(caseID)
        try recordAccess(to: caseID, record)
        return try snapshot(of: caseID)
    }

    /// Moves access entries kept aside on a full disk into their cases' access logs,
    /// with the time each access happened; they stay aside while the disk is still full.
    public func moveSpilledAccess() throws(StoreError) {
        guard let spill else { return }
        let waiting = spill.entries()
        guard !waiting.isEmpty, try restoreHold().isEmpty else { return }
        var writes: [AccessLogWrite] = []
        for entry in waiting {
            var record = entry.record
            record.occurredAtMillis = entry.occurredAtMillis
            for text in entry.caseIDs {
                // A case purged since is gone with its log; an entry that does not
                // parse was not written by this store.
                guard let caseID = try? CaseID(text), let made = try? accessLogWrites(for: [caseID], record)
                else { continue }
                writes += made
            }
        }
        do {
            try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { [writes] session in
                // Several entries of one case: the companion is new only for the first.
                var opened: Set<CaseID> = []
                for var write in writes {
                    if opened.contains(write.companion) { write.isNew = false }
                    opened.insert(write.companion)
                    try Self.commit([write], in: session)
                }
            }
        } catch  where error.isDiskFull {
            return
        }
        spill.clear()
    }

    /// Refuses a case this institution may no longer see (see ``withdrawal(of:)``).
    public func requireEntitled(_ caseID: CaseID) throws(StoreError) {
        if let reason = try withdrawal(of: caseID) {
            throw StoreError(
                code: reason.hasPrefix("purged") ? .caseNotFound : .withdrawn,
                message: "case \(caseID) is \(reason)")
        }
    }

    /// The access log of a case as held here, oldest first.
    ///
    /// - Throws: ``StoreError`` `caseNotFound` when the case itself is not held here (a
    ///   node answers only for cases it may see).
    public func accessLog(of caseID: CaseID) throws(StoreError) -> [AccessEntry] {
        _ = try snapshot(of: caseID)
        guard let companion = try? snapshot(of: Self.accessLogCase(of: caseID)) else { return [] }
        return Self.accessEntries(in: companion)
    }

    /// The access logs of several cases, read in one transaction (for a report over
    /// every case); a case with no log here has none in the answer.
    public func accessLogs(of caseIDs: [CaseID]) throws(StoreError) -> [CaseID: [AccessEntry]] {
        let companions = try snapshots(of: caseIDs.map(Self.accessLogCase(of:)))
        var logs: [CaseID: [AccessEntry]] = [:]
        for caseID in caseIDs {
            if let companion = companions[Self.accessLogCase(of: caseID)] {
                logs[caseID] = Self.accessEntries(in: companion)
            }
        }
        return logs
    }

    static func accessEntries(in companion: CaseSnapshot) -> [AccessEntry] {
        guard case .log(let log)? = companion.fields[accessLogField] else { return [] }
        let decoder = JSONDecoder()
        return log.visibleEntries.compactMap { entry in
            guard let record = try? decoder.decode(AccessRecord.self, from: Data(entry.text.utf8)) else { return nil }
            return AccessEntry(record: record, node: entry.id.dot.origin, hlc: entry.hlc)
        }.sorted { ($0.hlc, $0.node) < ($1.hlc, $1.node) }
    }
}
