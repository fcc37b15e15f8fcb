import CaseMeshCRDT
import Foundation
import GRDB

extension CaseStore {
    /// Checks the store through: SQLite's own integrity check, every case's version
    /// vector against the change log it was built from (the highest sequence number
    /// of each origin, numbered densely), and every stored listing line against the
    /// case it lists. Returns each problem found, in one sentence; empty when sound.
    ///
    /// Reads everything: minutes on a store of millions of changes, never a write.
    public func check() throws(StoreError) -> [String] {
        let schema = schema
        let replicaID = replicaID
        let now = clock.nowMillis()
        return try read { db in
            var problems: [String] = []
            for line in try String.fetchAll(db, sql: "PRAGMA integrity_check") where line != "ok" {
                problems.append("SQLite integrity check: \(line)")
            }
            // What the log holds, per case and origin: how many changes and the highest seq.
            var held: [Int64: [Int64: (count: UInt64, highest: UInt64)]] = [:]
            var caseKeys: [Int64: String] = [:]
            var origins: [Int64: String] = [:]
            let segments = try Row.fetchCursor(db, sql: "SELECT body FROM changeSegment ORDER BY id")
            while let row = try segments.next() {
                for entry in try ChangeLogSegment.entries(of: [UInt8](row[0] as Data)) where !entry.isBlank {
                    if caseKeys[entry.caseRef] == nil {
                        caseKeys[entry.caseRef] =
                            try String.fetchOne(
                                db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [entry.caseRef])
                            ?? ""
                    }
                    if origins[entry.replicaRef] == nil {
                        origins[entry.replicaRef] =
                            try String.fetchOne(
                                db, sql: "SELECT name FROM replica WHERE id = ?", arguments: [entry.replicaRef]) ?? ""
                    }
                    guard let caseKey = caseKeys[entry.caseRef], !caseKey.isEmpty,
                        let origin = origins[entry.replicaRef], !origin.isEmpty
                    else {
                        problems.append("the change log names an unknown case or replica")
                        continue
                    }
                    guard
                        let change = try? Change(
                            decoding: Change.encoded(caseID: caseKey, origin: origin, rest: entry.rest))
                    else {
                        problems.append("case \(caseKey): a change from \(origin) in the change log does not decode")
                        continue
                    }
                    var counts = held[entry.caseRef, default: [:]][entry.replicaRef] ?? (0, 0)
                    counts.count += 1
                    counts.highest = max(counts.highest, change.seq)
                    held[entry.caseRef, default: [:]][entry.replicaRef] = counts
                }
            }
            let tail = try LogTail(db)
            let visibility = SummaryRow.Visibility(institution: replicaID.institution, schema: schema, nowMillis: now)
            let live = try Row.fetchAll(
                db,
                sql:
                    "SELECT id, caseKey FROM caseRecord WHERE id NOT IN (SELECT caseRef FROM caseTombstone) ORDER BY id"
            )
            for row in live {
                let caseRef: Int64 = row[0]
                let caseKey: String = row[1]
                let snapshot = try Self.snapshot(db, caseID: CaseID(caseKey), tail: tail, schema: schema)
                let logged = held[caseRef] ?? [:]
                for (replicaRef, counts) in logged {
                    let origin = try ReplicaID(origins[replicaRef] ?? "")
                    if snapshot.version[origin] != counts.highest {
                        problems.append(
                            "case \(caseKey): its version vector says \(snapshot.version[origin]) changes from "
                                + "\(origin), the change log holds up to \(counts.highest)")
                    }
                    if counts.count != counts.highest {
                        problems.append(
                            "case \(caseKey): the change log holds \(counts.count) changes from \(origin), numbered "
                                + "up to \(counts.highest): some are missing or doubled")
                    }
                }
                if snapshot.version.totalCount != logged.values.reduce(0, { $0 + $1.count }) {
                    problems.append("case \(caseKey): its version vector counts changes the change log does not hold")
                }
                // Cases the tail changed since the checkpoint are listed from their snapshot.
                guard tail.changes(ofCase: caseRef).isEmpty else { continue }
                let expected = SummaryRow(snapshot: snapshot, visibility: visibility)
                let stored = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT title, stage, riskLevel, participants, searchText, conflicts, changeCount, accessLog
                        FROM caseSummary WHERE caseRef = ?
                        """, arguments: [caseRef])
                guard let stored else {
                    problems.append("case \(caseKey): it has no listing line, so no case list shows it")
                    continue
                }
                let participants =
                    expected.participants.isEmpty
                    ? "" : "\n" + expected.participants.joined(separator: "\n") + "\n"
                let title: String? = stored[0]
                let stage: String? = stored[1]
                let risk: String? = stored[2]
                let storedParticipants: String = stored[3]
                let searchText: String = stored[4]
                let conflicts: Int = stored[5]
                let changeCount: Int64 = stored[6]
                let accessLog: Bool = stored[7]
                var matches = title == expected.title && stage == expected.stage && risk == expected.riskLevel
                matches = matches && storedParticipants == participants && searchText == expected.searchText
                matches = matches && conflicts == expected.conflicts && accessLog == expected.accessLog
                matches = matches && UInt64(max(0, changeCount)) == expected.changeCount
                if !matches { problems.append("case \(caseKey): its listing line does not match the case") }
            }
            return problems
        }
    }
}
