import CaseMeshCRDT
import CaseMeshTestSupport
import Testing

/// Named merge behaviours, each merged in both directions.
@Suite struct MergeBehaviourTests {
    let caseID = try! CaseID("case-" + String(repeating: "a", count: 26))
    let dong = try! ReplicaID("dong/server")
    let senior = try! ReplicaID("senior/laptop-1")
    let risk = FieldKey(entity: "case", field: "riskLevel")
    let tags = FieldKey(entity: "case", field: "tags")
    let consent = FieldKey(entity: "case", field: "rwconsent")
    let notes = FieldKey(entity: "case", field: "notes")

    func change(_ origin: ReplicaID, _ seq: UInt64, at millis: UInt64, seen: VersionVector, _ ops: [FieldOperation])
        -> Change
    {
        Change(
            caseID: caseID, origin: origin, seq: seq, hlc: HybridTimestamp(physical: millis), context: seen, ops: ops)
    }

    func bothOrders(_ changes: [Change]) throws -> CaseDocument {
        var forward = CaseDocument(caseID: caseID)
        for change in changes { try forward.receive(change, rules: TestRules()) }
        var backward = CaseDocument(caseID: caseID)
        for change in changes.reversed() { try backward.receive(change, rules: TestRules()) }
        #expect(forward.stateDigest == backward.stateDigest)
        return forward
    }

    @Test func concurrentEditsToSameFieldKeepBothAsConflict() throws {
        let base = change(dong, 1, at: 100, seen: VersionVector(), [.assign(risk, .string("low"))])
        let seen = VersionVector([dong: 1])
        let high = change(dong, 2, at: 200, seen: seen, [.assign(risk, .string("high"))])
        let crisis = change(senior, 1, at: 150, seen: seen, [.assign(risk, .string("crisis"))])
        let document = try bothOrders([base, high, crisis])
        guard case .register(let register)? = document.fields[risk] else { Issue.record("no register"); return }
        #expect(register.isConflict)
        #expect(register.value == .string("high"), "later hlc is the provisional winner")
        #expect(register.siblings.map(\.value) == [.string("high"), .string("crisis")])
    }

    @Test func equalTimestampsBreakTiesByReplicaNotArrival() throws {
        let one = change(dong, 1, at: 100, seen: VersionVector(), [.assign(risk, .string("a"))])
        let two = change(senior, 1, at: 100, seen: VersionVector(), [.assign(risk, .string("b"))])
        let document = try bothOrders([one, two])
        guard case .register(let register)? = document.fields[risk] else { Issue.record("no register"); return }
        #expect(register.value == .string("b"), "senior/laptop-1 sorts after dong/server")
    }

    @Test func aWriteThatHasSeenTheConflictResolvesIt() throws {
        let high = change(dong, 1, at: 200, seen: VersionVector(), [.assign(risk, .string("high"))])
        let crisis = change(senior, 1, at: 150, seen: VersionVector(), [.assign(risk, .string("crisis"))])
        let resolution = change(
            senior, 2, at: 300, seen: VersionVector([dong: 1, senior: 1]), [.assign(risk, .string("crisis"))])
        let document = try bothOrders([high, crisis, resolution])
        guard case .register(let register)? = document.fields[risk] else { Issue.record("no register"); return }
        #expect(!register.isConflict)
        #expect(register.value == .string("crisis"))
    }

    @Test func concurrentAddSurvivesRemoveInAddWinsSet() throws {
        let add = change(dong, 1, at: 100, seen: VersionVector(), [.insert(tags, "isolation")])
        let remove = change(senior, 1, at: 200, seen: VersionVector([dong: 1]), [.remove(tags, "isolation")])
        let readd = change(dong, 2, at: 150, seen: VersionVector([dong: 1]), [.insert(tags, "isolation")])
        let document = try bothOrders([add, remove, readd])
        guard case .set(let set)? = document.fields[tags] else { Issue.record("no set"); return }
        #expect(set.elements(.addWins) == ["isolation"])
    }

    @Test func withdrawalBeatsConcurrentGrantInRemoveWinsSet() throws {
        let grant = change(dong, 1, at: 100, seen: VersionVector(), [.insert(consent, "senior")])
        let withdraw = change(senior, 1, at: 200, seen: VersionVector([dong: 1]), [.remove(consent, "senior")])
        let regrant = change(dong, 2, at: 300, seen: VersionVector([dong: 1]), [.insert(consent, "senior")])
        let document = try bothOrders([grant, withdraw, regrant])
        guard case .set(let set)? = document.fields[consent] else { Issue.record("no set"); return }
        #expect(set.elements(.removeWins).isEmpty)
        let later = change(dong, 3, at: 400, seen: VersionVector([dong: 2, senior: 1]), [.insert(consent, "senior")])
        let regranted = try bothOrders([grant, withdraw, regrant, later])
        guard case .set(let after)? = regranted.fields[consent] else { Issue.record("no set"); return }
        #expect(after.elements(.removeWins) == ["senior"], "a grant that has seen the withdrawal counts")
    }

    @Test func notesFromBothSidesAreKeptInTimestampOrderAndRedactionHides() throws {
        let first = change(dong, 1, at: 100, seen: VersionVector(), [.append(notes, "visited, no answer")])
        let second = change(senior, 1, at: 50, seen: VersionVector(), [.append(notes, "called daughter")])
        let redaction = change(
            senior, 2, at: 300, seen: VersionVector([dong: 1, senior: 1]),
            [.redact(notes, LogEntryID(dot: Dot(origin: dong, seq: 1), index: 0)), .append(notes, "corrected note")])
        let document = try bothOrders([first, second])
        guard case .log(let log)? = document.fields[notes] else { Issue.record("no log"); return }
        #expect(log.visibleEntries.map(\.text) == ["called daughter", "visited, no answer"])
        let redacted = try bothOrders([first, second, redaction])
        guard case .log(let after)? = redacted.fields[notes] else { Issue.record("no log"); return }
        #expect(after.visibleEntries.map(\.text) == ["called daughter", "corrected note"])
        #expect(after.entries.count == 3, "the redacted entry is hidden, never edited away")
    }

    @Test func changeWaitsForItsCausalDependencies() throws {
        let first = change(dong, 1, at: 100, seen: VersionVector(), [.assign(risk, .string("low"))])
        let second = change(senior, 1, at: 200, seen: VersionVector([dong: 1]), [.assign(risk, .string("high"))])
        var document = CaseDocument(caseID: caseID)
        #expect(try document.receive(second, rules: TestRules()) == .deferred)
        #expect(document.fields.isEmpty)
        #expect(try document.receive(first, rules: TestRules()) == .applied)
        #expect(document.pending.isEmpty)
        #expect(document.version == VersionVector([dong: 1, senior: 1]))
    }
}
