import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore

extension Simulation {
    /// Checks, at quiescence, every property that can be seen from outside:
    /// convergence, nothing acknowledged lost, every concurrent write surfaced as a
    /// conflict and none invented (equality with the reference merge of all
    /// acknowledged changes), need to know, and idempotence of a further sync.
    func check() async throws {
        let schema = CaseSchema.bundled
        let honest = stores.indices.filter { $0 != revoked }
        let revokedReplica = revoked.map { stores[$0].replicaID }
        var expectedPending = Array(repeating: 0, count: stores.count)
        // The cases each honest replica must hold (or, touched by a revoked
        // replica, holds): quarantine entries of any other case wait for nothing.
        var holding: [Int: Set<CaseID>] = [:]
        for (caseID, changes) in Dictionary(grouping: acknowledged, by: \.caseID) {
            // What each honest replica must show: every acknowledged change, except
            // that after a revocation no node accepts the revoked replica's seals, so
            // of its changes each keeps only what it held already (property 6 and
            // the threat model's revocation rule), and what depends on the rest waits.
            var included: [Int: [Change]] = [:]
            var references: [Int: CaseDocument] = [:]
            for index in honest {
                var kept = changes
                if let revokedReplica {
                    let version = (try? stores[index].snapshot(of: caseID))?.version
                    let pending = try stores[index].pendingDots(of: caseID)
                    // A case the revoked replica wrote to: what each node's servers
                    // still send it depends on their own views (a withdrawal only they
                    // accepted), so the node is checked against exactly what it holds.
                    let touched = changes.contains { $0.origin == revokedReplica }
                    kept = changes.filter {
                        (!touched && $0.origin != revokedReplica) || version?.contains($0.dot) == true
                            || pending.contains($0.dot)
                    }
                }
                var reference = CaseDocument(caseID: caseID)
                for change in kept.sorted(by: Change.causalOrder) { try reference.receive(change, rules: schema) }
                included[index] = kept
                references[index] = reference
            }
            func entitled(_ index: Int, by reference: CaseDocument) throws -> Bool {
                Entitlement(
                    of: try InstitutionID(institutions[index]), fields: reference.fields, schema: schema,
                    nowMillis: clocks[0].nowMillis()
                ).receivesCase
            }
            // Who holds a case the revoked replica wrote to depends on which of its
            // changes each node had accepted before the revocation (a participant
            // added, or removed, only there): each node is checked against the merge
            // of what it accepted, not against who should hold the case.
            let touchedByRevoked = changes.contains { $0.origin == revokedReplica }
            var participants: [String] = []
            for index in honest {
                guard let reference = references[index] else { continue }
                let waiting = reference.pending.values
                if let revokedReplica {
                    // Only what waits on the revoked replica's refused changes may wait.
                    if waiting.contains(where: { !$0.context.entries.keys.contains(revokedReplica) }) {
                        report.violations.append("\(caseID): replica \(index) waits for changes nobody revoked holds")
                    }
                } else if !waiting.isEmpty {
                    report.violations.append("\(caseID): acknowledged changes wait for changes nobody acknowledged")
                    continue
                }
                let mustHold = try entitled(index, by: reference)
                let pending = try stores[index].pendingDots(of: caseID)
                if mustHold ? pending != Set(reference.pending.keys) : !pending.isSubset(of: reference.pending.keys) {
                    report.violations.append(
                        "\(caseID): replica \(index) keeps \(pending.count) changes waiting, "
                            + "\(reference.pending.count) expected")
                }
                expectedPending[index] += pending.count
                if mustHold { participants.append(institutions[index]) }
                let held = try? stores[index].snapshot(of: caseID)
                if mustHold || (touchedByRevoked && held != nil) {
                    holding[index, default: []].insert(caseID)
                    guard let held else {
                        if !touchedByRevoked {
                            report.violations.append("\(caseID): replica \(index) is entitled but holds nothing")
                        }
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
            if let holder = honest.first(where: { participants.contains(institutions[$0]) }),
                let reference = references[holder]
            {
                report.conflicts += reference.fields.values.filter(\.isConflict).count
                checkRegistersIndependently(
                    caseID: caseID, changes: (included[holder] ?? []).filter { reference.pending[$0.dot] == nil },
                    holder: holder)
            }
        }
        // At quiescence nothing is held back unless its cause is permanent and shown:
        // a change quarantined is either superseded by its genuine copy or refused
        // for its revoked signer (`casemesh quarantine` says so).
        for index in honest {
            let figures = try stores[index].figures()
            if figures.pending != expectedPending[index] {
                report.violations.append(
                    "replica \(index) keeps \(figures.pending) changes waiting at quiescence, "
                        + "\(expectedPending[index]) for a permanent cause")
            }
            // A revoked signer's seals are refused as "no longer verifies" where its
            // certificate was known, and kept as unverified where it arrived only
            // after the revocation (the session reports the certificate's refusal);
            // a forgery under its seal is never superseded.
            let kept = try stores[index].quarantined().filter { entry in
                guard let caseID = try? CaseID(entry.caseID), holding[index]?.contains(caseID) == true else {
                    return false
                }
                // Its genuine copy arrived and waits (for a permanent cause, counted above).
                if let origin = try? ReplicaID(entry.origin),
                    (try? stores[index].pendingDots(of: caseID))?.contains(Dot(origin: origin, seq: entry.seq)) == true
                {
                    return false
                }
                // What the revoked replica wrote and this node did not hold before:
                // never accepted again, whatever first refused it.
                return entry.origin != revokedReplica?.rawValue
            }
            if let first = kept.first {
                report.violations.append(
                    "replica \(index) keeps \(kept.count) changes quarantined at quiescence; first: "
                        + "\(first.caseID) \(first.origin)#\(first.seq) from \(first.sender): \(first.reason)")
            }
            report.heldBack += expectedPending[index] + (try stores[index].quarantined().count - kept.count)
        }
        // A revoked laptop's changes after its revocation are accepted nowhere.
        for change in writtenAfterRevocation {
            for index in honest {
                let held = (try? stores[index].snapshot(of: change.caseID))?.version.contains(change.dot) ?? false
                if try held || stores[index].pendingDots(of: change.caseID).contains(change.dot) {
                    report.violations.append(
                        "replica \(index) accepted \(change.caseID) \(change.dot), written after its signer's revocation"
                    )
                }
            }
        }
        // Idempotence: one more round changes nothing anywhere.
        let before = try stores.indices.map { try snapshots(ofAll: $0) }
        for a in honest {
            for b in honest where a < b {
                let result = try await SimulatedLink.sync(end(a), end(b), cutAfter: nil)
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
    func checkRegistersIndependently(caseID: CaseID, changes: [Change], holder: Int) {
        var writes: [FieldKey: [(dot: Dot, hlc: HybridTimestamp, value: Value, context: VersionVector)]] = [:]
        for change in changes {
            var last: [FieldKey: Value] = [:]
            for case .assign(let field, let value) in change.ops { last[field] = value }
            for (field, value) in last {
                writes[field, default: []].append((change.dot, change.hlc, value, change.context))
            }
        }
        guard let held = try? stores[holder].snapshot(of: caseID) else { return }
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
