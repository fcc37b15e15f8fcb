import CaseMeshCRDT
import CaseMeshModel
import GRDB

/// The roles in a case that only one institution may give or take (``RoleAct``):
/// the lead hands a case over and the institution offered it accepts; only the
/// institution a referral is addressed to accepts or declines it. Each is decided
/// on the change and its causal context (the `roleGrant` rows of the changes it
/// had seen), so every replica decides the same, whatever else it holds; a
/// change refused here is quarantined like any unauthorised write.
extension ApplySession {
    /// Why `change` may not make the role moves it makes, or nil when it may (or
    /// makes none).
    func roleRefusal(_ change: Change, caseRef: Int64?) throws -> String? {
        let acts = RoleAct.acts(in: change)
        guard !acts.isEmpty, let caseRef else { return nil }
        // The opening change names the first lead (and may address referrals).
        if change.seq == 1, change.context.sortedEntries.isEmpty { return nil }
        // An access log follows its case's lead; its writers are checked as such.
        if try isAccessLog(caseRef) { return nil }
        let institution = change.origin.institution.rawValue
        for act in acts {
            switch act {
            case .offers(let to, let status):
                let lead = try lead(at: change, caseRef: caseRef)
                guard lead == institution else {
                    let verb = status == .withdrawn ? "withdraw a handover" : "offer the case to \(to.prefix(80))"
                    return "\(institution) does not lead the case (\(lead ?? "no lead")), so it may not \(verb)"
                }
            case .answersOffer(let to, _):
                guard to == institution else {
                    return "only \(to.prefix(80)) may answer the handover offered to it, not \(institution)"
                }
                guard try offerStands(to: institution, at: change, caseRef: caseRef) else {
                    return "no handover of the case to \(institution) had been offered in what the change had seen"
                }
            case .setsLead(let name):
                guard name == institution, acts.contains(.answersOffer(to: name, status: .accepted)) else {
                    return "the lead institution changes only by a handover the new lead accepts "
                        + "(\(institution) set it to \(name.prefix(80)))"
                }
            case .answersReferral(let instance):
                let receivers = try referralReceivers(instance, at: change, caseRef: caseRef)
                guard receivers.contains(institution) else {
                    let named = receivers.sorted().joined(separator: ", ")
                    return "only the receiving institution (\(named.isEmpty ? "none" : named)) may accept or decline "
                        + "referral \(instance), not \(institution)"
                }
            case .addressesReferral: continue
            }
        }
        return nil
    }

    /// Records the roles `change` gives (called as it applies, local or received).
    func recordRoleGrants(_ change: Change, caseRef: Int64) throws {
        for act in RoleAct.acts(in: change) {
            let grant: (role: String, institution: String)
            switch act {
            case .setsLead(let name): grant = ("lead", name)
            case .offers(let to, .offered): grant = ("offer", to)
            case .addressesReferral(let instance, let to): grant = ("referral:" + instance, to)
            default: continue
            }
            try database.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO roleGrant (caseRef, role, institution, originRef, seq, physical, logical)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                caseRef, grant.role, grant.institution, try replicaRef(change.origin), Int64(clamping: change.seq),
                Int64(clamping: change.hlc.physical), Int64(clamping: change.hlc.logical),
            ])
        }
    }

    /// The grants of `role` in the case that `change` had seen, latest first.
    private func grants(_ role: String, seenBy change: Change, caseRef: Int64) throws
        -> [(institution: String, time: HybridTimestamp)]
    {
        var seen: [(institution: String, time: HybridTimestamp, dot: Dot)] = []
        for row in try Row.fetchAll(
            database.cachedStatement(
                sql:
                    "SELECT institution, originRef, seq, physical, logical FROM roleGrant WHERE caseRef = ? AND role = ?"
            ), arguments: [caseRef, role])
        {
            let dot = Dot(origin: try replicaName(row[1]), seq: UInt64(clamping: row[2] as Int64))
            guard change.context.contains(dot) else { continue }
            let time = HybridTimestamp(
                physical: UInt64(clamping: row[3] as Int64), logical: UInt32(clamping: row[4] as Int64))
            seen.append((row[0], time, dot))
        }
        // Latest by timestamp (which follows causality), ties by dot: the same on every replica.
        seen.sort { ($0.time, $0.dot.origin.rawValue, $0.dot.seq) > ($1.time, $1.dot.origin.rawValue, $1.dot.seq) }
        return seen.map { ($0.institution, $0.time) }
    }

    /// The institution leading the case in what `change` had seen. A case held
    /// from before role grants were recorded has none: its current lead stands in.
    private func lead(at change: Change, caseRef: Int64) throws -> String? {
        if let latest = try grants("lead", seenBy: change, caseRef: caseRef).first { return latest.institution }
        return try currentValue(of: CaseField.leadInstitution, caseRef: caseRef)
    }

    /// Whether the lead, after it last changed, offered the case to `institution`
    /// in what `change` had seen.
    private func offerStands(to institution: String, at change: Change, caseRef: Int64) throws -> Bool {
        let leadSince = try grants("lead", seenBy: change, caseRef: caseRef).first?.time ?? .zero
        return try grants("offer", seenBy: change, caseRef: caseRef).contains {
            $0.institution == institution && $0.time > leadSince
        }
    }

    /// The institutions a referral was addressed to in what `change` had seen (the
    /// current target for a referral from before role grants were recorded).
    private func referralReceivers(_ instance: String, at change: Change, caseRef: Int64) throws -> Set<String> {
        let seen = Set(try grants("referral:" + instance, seenBy: change, caseRef: caseRef).map(\.institution))
        if !seen.isEmpty { return seen }
        let current = try currentValue(of: CaseField.referral(instance, "to"), caseRef: caseRef)
        return current.map { [$0] } ?? []
    }

    private func isAccessLog(_ caseRef: Int64) throws -> Bool {
        guard case .set(let tags)? = try state(StateKey(caseRef: caseRef, fieldRef: try fieldRef(CaseField.tags)))
        else { return false }
        return tags.contains(CaseStore.accessLogTag, .addWins)
    }

    private func currentValue(of field: FieldKey, caseRef: Int64) throws -> String? {
        guard case .register(let register)? = try state(StateKey(caseRef: caseRef, fieldRef: try fieldRef(field))),
            case .string(let value)? = register.value
        else { return nil }
        return value
    }
}
