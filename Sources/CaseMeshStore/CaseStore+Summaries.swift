import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// What a case list keeps: the filters of `GET /api/v1/cases` and `case list`.
public struct CaseListFilter: Hashable, Sendable {
    public var stage: String?
    public var riskLevel: String?
    /// An institution that must be among the case's participants.
    public var participant: String?
    /// Only cases with an open conflict.
    public var conflictsOnly = false
    /// Text that the title or a person's name must contain (case-insensitive).
    public var text: String?
    /// Only cases whose next statutory deadline is missed before this moment (ms):
    /// now for the overdue list, the end of the third working day for due-soon.
    public var deadlineBefore: UInt64?
    /// Only the cases of this case manager (as the case names them).
    public var caseManager: String?

    public init(
        stage: String? = nil, riskLevel: String? = nil, participant: String? = nil, conflictsOnly: Bool = false,
        text: String? = nil, deadlineBefore: UInt64? = nil, caseManager: String? = nil
    ) {
        self.deadlineBefore = deadlineBefore
        self.caseManager = caseManager
        self.stage = stage
        self.riskLevel = riskLevel
        self.participant = participant
        self.conflictsOnly = conflictsOnly
        self.text = text
    }
}

/// One page of a case list, and how many cases matched in all.
public struct CaseSummaryPage: Hashable, Sendable {
    public var cases: [CaseSummary]
    public var total: Int
}

/// A case's listing line as stored in `caseSummary` (see 0005-case-summaries.sql).
struct SummaryRow {
    var caseKey: String
    var title: String?
    var stage: String?
    var riskLevel: String?
    var participants: [String]
    var searchText: String
    var conflicts: Int
    var changeCount: UInt64
    var accessLog: Bool
    /// See `visibleUntil` in 0005-case-summaries.sql: nil unbounded, 0 not entitled.
    var visibleUntil: Int64?
    var caseManager: String?
    /// See 0007-deadlines-in-listing.sql.
    var deadlineName: String?
    var deadlineEnd: Int64?

    /// Whether a field is read into a listing line (shown, searched, or deciding
    /// who may see the case).
    static func isListed(_ field: FieldKey) -> Bool {
        switch field.entity {
        case "case":
            return [
                "title", "stage", "riskLevel", "participants", "tags", "leadInstitution", "caseManager", "stageEvents",
                "openedAt",
            ].contains(field.field)
        case "report": return field.field == "receivedAt"
        case "person": return field.field == "name"
        // The monitoring deadline of each plan item (DeadlineRules.monitoring).
        case "plan": return ["monitorEveryDays", "monitoredAt", "status"].contains(field.field)
        case "consent": return true
        default: return false
        }
    }

    init(
        caseKey: String, title: String?, stage: String?, riskLevel: String?, participants: [String],
        searchText: String, conflicts: Int, changeCount: UInt64, accessLog: Bool, visibleUntil: Int64? = nil
    ) {
        self.visibleUntil = visibleUntil
        self.caseKey = caseKey
        self.title = title
        self.stage = stage
        self.riskLevel = riskLevel
        self.participants = participants
        self.searchText = searchText
        self.conflicts = conflicts
        self.changeCount = changeCount
        self.accessLog = accessLog
    }

    init(
        caseKey: String, fields: [FieldKey: FieldState], conflicts: Int, changeCount: UInt64,
        visibility: Visibility
    ) {
        switch Entitlement.horizon(
            of: visibility.institution, fields: fields, schema: visibility.schema, nowMillis: visibility.nowMillis)
        {
        case .none: visibleUntil = 0
        case .unbounded: visibleUntil = nil
        case .until(let end): visibleUntil = Int64(clamping: end)
        }
        func register(_ name: String) -> String? {
            guard case .register(let state)? = fields[FieldKey(entity: "case", field: name)] else { return nil }
            return state.value?.description
        }
        self.caseKey = caseKey
        title = register("title")
        stage = register("stage")
        riskLevel = register("riskLevel")
        participants = []
        if case .set(let set)? = fields[CaseField.participants] {
            participants = set.elements(.addWins)
        }
        var search: [String] = title.map { [$0.lowercased()] } ?? []
        for (key, state) in fields.sorted(by: { $0.key < $1.key })
        where key.entity == "person" && key.field == "name" {
            guard case .register(let register) = state else { continue }
            // Every sibling: a name in conflict is still found under either spelling.
            search += register.siblings.map { $0.value.description.lowercased() }
        }
        searchText = search.joined(separator: "\n")
        caseManager = register("caseManager")
        if !Self.accessLogTagged(fields),
            let next = DeadlineRules.bundled.nextDue(StageEvent.events(in: fields), fields: fields)
        {
            deadlineName = next.name
            deadlineEnd = Int64(clamping: next.due.endMillis)
        }
        self.conflicts = conflicts
        self.changeCount = changeCount
        var isLog = false
        if case .set(let tags)? = fields[CaseField.tags] {
            isLog = tags.contains(CaseStore.accessLogTag, .addWins)
        }
        accessLog = isLog
    }

    static func accessLogTagged(_ fields: [FieldKey: FieldState]) -> Bool {
        guard case .set(let tags)? = fields[CaseField.tags] else { return false }
        return tags.contains(CaseStore.accessLogTag, .addWins)
    }

    /// Whose need-to-know rule decides `visibleUntil`, and when.
    struct Visibility {
        var institution: InstitutionID
        var schema: CaseSchema
        var nowMillis: UInt64
    }

    init(snapshot: CaseSnapshot, visibility: Visibility) {
        self.init(
            caseKey: snapshot.caseID.rawValue, fields: snapshot.fields, conflicts: snapshot.conflicts.count,
            changeCount: snapshot.version.totalCount, visibility: visibility)
    }

    func isVisible(atMillis now: UInt64) -> Bool {
        guard let visibleUntil else { return true }
        return visibleUntil > Int64(clamping: now)
    }

    var summary: CaseSummary {
        get throws {
            CaseSummary(
                caseID: try CaseID(caseKey), title: title, stage: stage, riskLevel: riskLevel,
                participants: participants, openConflicts: conflicts, changeCount: changeCount,
                caseManager: caseManager, nextDeadline: deadlineName,
                nextDeadlineEndMillis: deadlineEnd.map { UInt64(max(0, $0)) })
        }
    }

    func matches(_ filter: CaseListFilter) -> Bool {
        if accessLog { return false }
        if let stage = filter.stage, self.stage != stage { return false }
        if let risk = filter.riskLevel, riskLevel != risk { return false }
        if let participant = filter.participant, !participants.contains(participant) { return false }
        if filter.conflictsOnly && conflicts == 0 { return false }
        if let text = filter.text?.lowercased(), !text.isEmpty, !searchText.contains(text) { return false }
        if let before = filter.deadlineBefore {
            guard let deadlineEnd, deadlineEnd <= Int64(clamping: before) else { return false }
        }
        if let manager = filter.caseManager, caseManager != manager { return false }
        return true
    }

    /// The listed fields among the store's field names, by `fieldName.id`.
    static func listedFieldRefs(_ db: Database) throws -> [Int64: FieldKey] {
        var listed: [Int64: FieldKey] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, name FROM fieldName") {
            guard let key = try? FieldKey(parsing: row[1] as String), isListed(key) else { continue }
            listed[row[0]] = key
        }
        return listed
    }

    /// Reads a case's checkpointed listing fields and writes its line.
    ///
    /// One range read of the case's field states (its primary key's prefix); only the
    /// listed ones are decoded, and not even those when `decoded` has them (the
    /// checkpoint's own cache of the states it just wrote).
    static func refresh(
        _ db: Database, caseRef: Int64, caseKey: String, changeCount: UInt64, coder: some ReplicaCoder,
        visibility: Visibility, listed: [Int64: FieldKey], decoded: (Int64) -> FieldState? = { _ in nil }
    ) throws {
        var fields: [FieldKey: FieldState] = [:]
        var conflicts = 0
        let rows = try Row.fetchCursor(
            db.cachedStatement(sql: "SELECT fieldRef, conflicted, state FROM fieldState WHERE caseRef = ?"),
            arguments: [caseRef])
        while let row = try rows.next() {
            let fieldRef: Int64 = row[0]
            if row[1] as Bool { conflicts += 1 }
            guard let key = listed[fieldRef] else { continue }
            fields[key] = try decoded(fieldRef) ?? FieldState(decoding: [UInt8](row[2] as Data), coder: coder)
        }
        let row = SummaryRow(
            caseKey: caseKey, fields: fields, conflicts: conflicts, changeCount: changeCount, visibility: visibility)
        try db.cachedStatement(
            sql: """
                INSERT OR REPLACE INTO caseSummary
                (caseRef, caseKey, title, stage, riskLevel, participants, searchText, conflicts, changeCount, accessLog,
                 visibleUntil, caseManager, deadlineName, deadlineEnd)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            caseRef, caseKey, row.title, row.stage, row.riskLevel,
            row.participants.isEmpty ? "" : "\n" + row.participants.joined(separator: "\n") + "\n",
            row.searchText, row.conflicts, Int64(clamping: row.changeCount), row.accessLog, row.visibleUntil,
            row.caseManager, row.deadlineName, row.deadlineEnd,
        ])
    }

    /// Writes every case's line from its checkpointed state (the migration that
    /// creates the table).
    static func rebuildAll(_ db: Database) throws {
        let coder = try ReplicaTableCoder(db)
        guard let replica = try String.fetchOne(db, sql: "SELECT replicaID FROM replicaInfo WHERE singleton = 1")
        else { return }
        // The rule reads only participants, lead and consents, whose merge semantics
        // are the bundled schema's; the next checkpoint of a case rewrites its line.
        let visibility = Visibility(
            institution: try ReplicaID(replica).institution, schema: .bundled,
            nowMillis: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
        let listed = try listedFieldRefs(db)
        for row in try Row.fetchAll(
            db,
            sql: "SELECT id, caseKey, version FROM caseRecord WHERE id NOT IN (SELECT caseRef FROM caseTombstone)")
        {
            var reader = BinaryReader([UInt8](row[2] as Data))
            var total: UInt64 = 0
            while !reader.isAtEnd {
                _ = try coder.read(from: &reader)
                total &+= try reader.readVarint()
            }
            try refresh(
                db, caseRef: row[0], caseKey: row[1], changeCount: total, coder: coder, visibility: visibility,
                listed: listed)
        }
    }
}

extension CaseStore {
    /// Every case held here, by case ID.
    public func caseSummaries() throws(StoreError) -> [CaseSummary] {
        try caseSummaries(matching: CaseListFilter(), limit: Int.max, offset: 0, hidingWithdrawn: false).cases
    }

    /// One page of the cases held here that match `filter`, by case ID.
    ///
    /// Cases unchanged since the last checkpoint are read from their stored listing
    /// lines, filtered and paged in SQL; the few the log's tail has changed since
    /// are read whole and merged in, so the list is exactly what snapshots would say.
    ///
    /// - Parameter hidingWithdrawn: leave out the cases this institution is no longer
    ///   entitled to (held only until its own edits have gone out), as a person's
    ///   list must.
    public func caseSummaries(
        matching filter: CaseListFilter, limit: Int, offset: Int, hidingWithdrawn: Bool = true
    ) throws(StoreError) -> CaseSummaryPage {
        let schema = schema
        let replicaID = replicaID
        let now = clock.nowMillis()
        return try read { db in
            let tail = try LogTail(db)
            let visibility = SummaryRow.Visibility(institution: replicaID.institution, schema: schema, nowMillis: now)
            // A departure notice held for a case may take this institution out of it
            // before the change itself arrives: those few cases get the whole rule.
            var hidden: Set<Int64> = []
            if hidingWithdrawn {
                // The notices lead (CROSS JOIN keeps that order): left to itself the
                // planner scanned every case record to look each up among the notices.
                let noticed = try Int64.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT DISTINCT caseRecord.id FROM departureNotice
                            CROSS JOIN caseRecord ON caseRecord.caseKey = departureNotice.caseKey
                            """))
                for caseRef in noticed {
                    let withdrawn = try Self.withdrawnCases(
                        db, replicaID: replicaID, schema: schema, nowMillis: now, only: caseRef, checkDelivery: false)
                    if !withdrawn.isEmpty { hidden.insert(caseRef) }
                }
            }
            var fresh: [SummaryRow] = []
            for caseRef in tail.byCase.keys where !hidden.contains(caseRef) {
                let isPurged =
                    try Bool.fetchOne(
                        db, sql: "SELECT 1 FROM caseTombstone WHERE caseRef = ?", arguments: [caseRef]) ?? false
                guard !isPurged,
                    let caseKey = try String.fetchOne(
                        db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [caseRef])
                else { continue }
                let row = SummaryRow(
                    snapshot: try Self.snapshot(db, caseID: CaseID(caseKey), tail: tail, schema: schema),
                    visibility: visibility)
                if row.matches(filter), !hidingWithdrawn || row.isVisible(atMillis: now) { fresh.append(row) }
            }
            fresh.sort { $0.caseKey < $1.caseKey }
            var conditions = ["accessLog = 0", "caseRef NOT IN (SELECT caseRef FROM caseTombstone)"]
            var arguments: [any DatabaseValueConvertible] = []
            let excluded = hidden.union(tail.byCase.keys)
            if !excluded.isEmpty {
                conditions.append("caseRef NOT IN (\(excluded.sorted().map(String.init).joined(separator: ",")))")
            }
            if let stage = filter.stage {
                conditions.append("stage = ?")
                arguments.append(stage)
            }
            if let risk = filter.riskLevel {
                conditions.append("riskLevel = ?")
                arguments.append(risk)
            }
            if let participant = filter.participant {
                conditions.append("instr(participants, ?) > 0")
                arguments.append("\n" + participant + "\n")
            }
            if filter.conflictsOnly { conditions.append("conflicts > 0") }
            if hidingWithdrawn {
                conditions.append("(visibleUntil IS NULL OR visibleUntil > ?)")
                arguments.append(Int64(clamping: now))
            }
            if let text = filter.text?.lowercased(), !text.isEmpty {
                conditions.append("instr(searchText, ?) > 0")
                arguments.append(text)
            }
            if let before = filter.deadlineBefore {
                conditions.append("deadlineEnd IS NOT NULL AND deadlineEnd <= ?")
                arguments.append(Int64(clamping: before))
            }
            if let manager = filter.caseManager {
                conditions.append("caseManager = ?")
                arguments.append(manager)
            }
            let condition = conditions.joined(separator: " AND ")
            let stored =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM caseSummary WHERE \(condition)",
                    arguments: StatementArguments(arguments)) ?? 0
            // With no fresh lines the page is the stored page; otherwise it lies within
            // the first offset + limit stored lines, merged with the fresh ones.
            let sqlLimit: Int
            let sqlOffset: Int
            if fresh.isEmpty {
                (sqlLimit, sqlOffset) = (limit == Int.max ? -1 : limit, offset)
            } else {
                let (window, overflow) = offset.addingReportingOverflow(limit)
                (sqlLimit, sqlOffset) = (overflow || limit == Int.max ? -1 : window, 0)
            }
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT caseKey, title, stage, riskLevel, participants, searchText, conflicts, changeCount,
                    caseManager, deadlineName, deadlineEnd
                    FROM caseSummary WHERE \(condition) ORDER BY caseKey LIMIT ? OFFSET ?
                    """,
                arguments: StatementArguments(arguments + [sqlLimit, sqlOffset]))
            var merged: [SummaryRow] = []
            merged.reserveCapacity(rows.count + fresh.count)
            var next = fresh.makeIterator()
            var pending = next.next()
            for row in rows {
                let participants = (row[4] as String).split(separator: "\n").map(String.init)
                var line = SummaryRow(
                    caseKey: row[0], title: row[1], stage: row[2], riskLevel: row[3], participants: participants,
                    searchText: row[5], conflicts: row[6], changeCount: UInt64(max(0, row[7] as Int64)),
                    accessLog: false)
                line.caseManager = row[8]
                line.deadlineName = row[9]
                line.deadlineEnd = row[10]
                while let candidate = pending, candidate.caseKey < line.caseKey {
                    merged.append(candidate)
                    pending = next.next()
                }
                merged.append(line)
            }
            while let candidate = pending {
                merged.append(candidate)
                pending = next.next()
            }
            let page = merged.dropFirst(offset - sqlOffset).prefix(limit)
            return CaseSummaryPage(cases: try page.map { try $0.summary }, total: stored + fresh.count)
        }
    }
}
