import CaseMeshCRDT
import CaseMeshModel
import CaseMeshTestSupport
import Foundation
import Testing

@_spi(Testing) @testable import CaseMeshStore

/// The case list read from stored listing lines says exactly what snapshots of
/// every case say, for every filter and page, while a long apply is half-way (the
/// log's tail not yet checkpointed) and after it.
@Suite struct CaseListTests {
    static let laptop = try! ReplicaID("dong.office/laptop")
    static let server = try! ReplicaID("dong.office/server")
    static let stages = ["discovery", "intake", "assessment", "planning"]
    static let risks = ["low", "medium", "high", "crisis"]
    static let names = ["김민지", "이서연", "박지훈", "최수아", "Kim Ji-ho"]

    /// What the list must say, made from full snapshots.
    static func expected(_ store: CaseStore, _ filter: CaseListFilter) throws -> [CaseSummary] {
        try store.caseSummaries(matching: CaseListFilter(), limit: Int.max, offset: 0, hidingWithdrawn: false).cases
            .filter { summary in
                let snapshot = try store.snapshot(of: summary.caseID)
                func register(_ name: String) -> String? {
                    guard case .register(let state)? = snapshot.fields[FieldKey(entity: "case", field: name)] else {
                        return nil
                    }
                    return state.value?.description
                }
                #expect(summary.title == register("title") && summary.stage == register("stage"))
                #expect(summary.riskLevel == register("riskLevel") && summary.openConflicts == snapshot.conflicts.count)
                #expect(summary.changeCount == snapshot.version.totalCount)
                if let stage = filter.stage, register("stage") != stage { return false }
                if let risk = filter.riskLevel, register("riskLevel") != risk { return false }
                if let text = filter.text?.lowercased() {
                    let names = snapshot.fields.compactMap { key, state -> [String]? in
                        guard key.entity == "person", key.field == "name", case .register(let register) = state
                        else { return nil }
                        return register.siblings.map { $0.value.description.lowercased() }
                    }.flatMap { $0 }
                    let haystack = [register("title")?.lowercased() ?? ""] + names
                    if !haystack.contains(where: { $0.contains(text) }) { return false }
                }
                return true
            }
    }

    static func check(_ store: CaseStore, seed: UInt64, _ context: String) throws {
        var generator = SeededGenerator(seed: seed)
        let all = try expected(store, CaseListFilter())
        #expect(!all.isEmpty)
        // Every stored case is listed once, in case ID order.
        #expect(all.map(\.caseID) == all.map(\.caseID).sorted(by: { $0.rawValue < $1.rawValue }), "\(context)")
        for _ in 0..<12 {
            var filter = CaseListFilter()
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: filter.stage = stages.randomElement(using: &generator)
            case 1: filter.riskLevel = risks.randomElement(using: &generator)
            case 2: filter.text = String((names.randomElement(using: &generator) ?? "").prefix(2)).uppercased()
            default: break
            }
            let matching = try expected(store, filter)
            let limit = Int.random(in: 1...9, using: &generator)
            let offset = Int.random(in: 0...(matching.count + 2), using: &generator)
            let page = try store.caseSummaries(matching: filter, limit: limit, offset: offset)
            #expect(page.total == matching.count, "\(context) \(filter)")
            #expect(
                page.cases == Array(matching.dropFirst(offset).prefix(limit)),
                "\(context) \(filter) limit \(limit) offset \(offset)")
        }
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func theListMatchesSnapshotsMidApplyAndAfter(seed: UInt64) throws {
        var generator = SeededGenerator(seed: seed)
        let source = try CaseStore.inMemory(replicaID: Self.laptop)
        var caseIDs: [CaseID] = []
        for index in 0..<30 {
            let opening = try source.openCase(
                ops: [
                    .assign(FieldKey(entity: "case", field: "title"), .string("사례 \(index) 위기가구")),
                    .assign(FieldKey(entity: "case", field: "stage"), .string(Self.stages[index % 4])),
                ], using: &generator)
            caseIDs.append(opening.caseID)
        }
        for _ in 0..<90 {
            let caseID = caseIDs.randomElement(using: &generator)!
            let op: FieldOperation
            switch Int.random(in: 0..<4, using: &generator) {
            case 3:
                // Not listed: the listing line's count moves, nothing else.
                op = .assign(
                    FieldKey(entity: "case", field: "caseManager"),
                    .string("담당 \(Int.random(in: 1...9, using: &generator))"))
            case 0:
                op = .assign(
                    FieldKey(entity: "case", field: "riskLevel"), .string(Self.risks.randomElement(using: &generator)!))
            case 1:
                op = .assign(
                    FieldKey(entity: "case", field: "stage"), .string(Self.stages.randomElement(using: &generator)!))
            default:
                op = .assign(
                    FieldKey(entity: "person", instance: "p\(Int.random(in: 1...2, using: &generator))", field: "name"),
                    .string(Self.names.randomElement(using: &generator)!))
            }
            try source.write(caseID: caseID, ops: [op])
        }
        var changes: [Change] = []
        var cursor: UInt64 = 1
        while true {
            let page = try source.feedPage(from: cursor, maxChanges: 1000)
            changes += page.changes
            cursor = page.nextCursor
            if page.isFinal { break }
        }
        let receiver = try CaseStore.inMemory(replicaID: Self.server)
        var checkedMidway = false
        var failure: (any Error)?
        let report = try receiver.apply(changes.map { ($0, $0.encoded()) }, batchSize: 40) { progress in
            // Between transactions: the tail holds what no checkpoint has written yet.
            guard !checkedMidway, progress.applied > 60 else { return }
            checkedMidway = true
            do { try Self.check(receiver, seed: seed, "mid-apply") } catch { failure = error }
        }
        if let failure { throw failure }
        #expect(checkedMidway && report.rejected.isEmpty)
        try Self.check(receiver, seed: seed &+ 100, "after the apply")
        #expect(try receiver.caseSummaries().count == 30)
        // Every listing line, rewritten at checkpoints in whole or in part, matches its case.
        #expect(try receiver.check() == [])
        #expect(try source.check() == [])
    }
}
