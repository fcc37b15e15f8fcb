import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore

extension Simulation {
    /// Checks, at quiescence, every property that can be seen from outside:
    /// convergence, nothing acknowledged lost, every concurrent write surfaced as a
    /// conflict and none invented (equality with the reference merge of all
    /// acknowledged changes), need to know, and idempotence of a further sync.
    func check() throws {
        let schema = CaseSchema.bundled
        for (caseID, changes) in Dictionary(grouping: acknowledged, by: \.caseID) {
            var reference = CaseDocument(caseID: caseID)
            for change in changes.sorted(by: Change.causalOrder) { try reference.receive(change, rules: schema) }
            guard reference.pending.isEmpty else {
                report.violations.append("\(caseID): acknowledged changes wait for changes nobody acknowledged")
                continue
            }
            // Who may hold the case now: participants that lead it or that the consent covers.
            let participants = try institutions.filter { name in
                Entitlement(
                    of: try InstitutionID(name), fields: reference.fields, schema: schema,
                    nowMillis: clocks[0].nowMillis()
                ).receivesCase
            }
            for (index, store) in stores.enumerated() {
                let held = try? store.snapshot(of: caseID)
                if participants.contains(institutions[index]) {
                    guard let held else {
                        report.violations.append("\(caseID): replica \(index) is entitled but holds nothing")
                        continue
                    }
                    if held.version != reference.version {
                        report.violations.append(
                            "\(caseID): replica \(index) holds \(held.version), acknowledged \(reference.version)")
                    }
                    if held.fields != reference.fields {
                        report.violations.append("\(caseID): replica \(index) differs from the merge of all changes")
                    }
                } else if held != nil {
                    // Whatever path the withdrawal or removal took, at quiescence a node
                    // of an institution without the right holds nothing of the case.
                    let joined = (everParticipants[caseID] ?? []).contains(institutions[index])
                    report.violations.append(
                        joined
                            ? "\(caseID): replica \(index) still holds a case its institution may no longer hold"
                            : "\(caseID): replica \(index) holds a case its institution never joined")
                }
            }
            report.conflicts += reference.fields.values.filter(\.isConflict).count
            checkRegistersIndependently(caseID: caseID, changes: changes, participants: participants)
        }
        // Idempotence: one more round changes nothing anywhere.
        let before = try stores.indices.map { try snapshots(ofAll: $0) }
        for a in stores.indices {
            for b in stores.indices where a < b {
                let result = try SimulatedLink.sync(stores[a], stores[b], cutAfter: nil)
                if result.changesMoved > 0 { report.violations.append("a sync after quiescence moved changes") }
            }
        }
        let after = try stores.indices.map { try snapshots(ofAll: $0) }
        if before != after { report.violations.append("a sync after quiescence changed a case") }
    }

    /// Computes every register's surviving writes from the changes alone, without
    /// the merge code: a write survives unless another write to the same field has it
    /// in its context. The held siblings must be exactly those, winner first by
    /// (hlc, replica), so a broken merge rule cannot hide behind a reference that
    /// shares it.
    func checkRegistersIndependently(caseID: CaseID, changes: [Change], participants: [String]) {
        var writes: [FieldKey: [(dot: Dot, hlc: HybridTimestamp, value: Value, context: VersionVector)]] = [:]
        for change in changes {
            var last: [FieldKey: Value] = [:]
            for case .assign(let field, let value) in change.ops { last[field] = value }
            for (field, value) in last {
                writes[field, default: []].append((change.dot, change.hlc, value, change.context))
            }
        }
        guard let holder = stores.indices.first(where: { participants.contains(institutions[$0]) }),
            let held = try? stores[holder].snapshot(of: caseID)
        else { return }
        for (field, fieldWrites) in writes {
            let surviving = fieldWrites.filter { write in
                !fieldWrites.contains { other in other.dot != write.dot && other.context.contains(write.dot) }
            }.sorted { ($0.hlc, $0.dot.origin, $0.dot.seq) > ($1.hlc, $1.dot.origin, $1.dot.seq) }
            guard case .register(let register)? = held.fields[field] else {
                report.violations.append("\(caseID) \(field): written but not a register on replica \(holder)")
                continue
            }
            if Set(register.siblings.map(\.dot)) != Set(surviving.map(\.dot)) {
                report.violations.append(
                    "\(caseID) \(field): replica \(holder) keeps \(register.siblings.count) values, "
                        + "\(surviving.count) concurrent writes expected")
            } else if register.siblings.map(\.dot) != surviving.map(\.dot) {
                report.violations.append("\(caseID) \(field): concurrent values out of (hlc, replica) order")
            } else if register.value != surviving.first?.value {
                report.violations.append("\(caseID) \(field): the provisional winner is not the latest write")
            }
        }
    }

    func snapshots(ofAll replica: Int) throws -> [CaseID: CaseSnapshot] {
        var result: [CaseID: CaseSnapshot] = [:]
        for summary in try stores[replica].caseSummaries() {
            result[summary.caseID] = try stores[replica].snapshot(of: summary.caseID)
        }
        return result
    }
}
