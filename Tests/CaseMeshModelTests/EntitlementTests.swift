import CaseMeshCRDT
import CaseMeshModel
import Testing

/// The need-to-know rule: participation and a consent that covers the institution.
@Suite struct EntitlementTests {
    let schema = CaseSchema.bundled
    let dong = try! ReplicaID("dong.office/server")
    let senior = try! InstitutionID("senior.centre")
    let mental = try! InstitutionID("mental.centre")
    let opened = try! CaseID("case-0123456789abcdefghjkmnpqrs")
    /// 2026-11-23T00:00:00Z
    let now: UInt64 = 1_795_392_000_000

    /// The merged fields of a case after `writes` by the dong office, one change each.
    func fields(_ writes: [[FieldOperation]]) throws -> [FieldKey: FieldState] {
        var document = CaseDocument(caseID: opened)
        var seq: UInt64 = 0
        for ops in writes {
            seq += 1
            let change = Change(
                caseID: opened, origin: dong, seq: seq, hlc: HybridTimestamp(physical: now + seq),
                context: document.version, ops: ops)
            _ = try document.receive(change, rules: schema)
        }
        return document.fields
    }

    var opening: [FieldOperation] {
        [.insert(Entitlement.participants, "dong.office"), .assign(Entitlement.lead, .string("dong.office"))]
    }

    @Test func theLeadNeedsNoConsentAndAParticipantWithoutOneGetsNothing() throws {
        let state = try fields([opening, [.insert(Entitlement.participants, "senior.centre")]])
        #expect(
            Entitlement(of: try InstitutionID("dong.office"), fields: state, schema: schema, nowMillis: now)
                .receivesCase)
        #expect(Entitlement(of: senior, fields: state, schema: schema, nowMillis: now).categories.isEmpty)
    }

    @Test func aConsentCoversItsRecipientsForItsCategoriesUntilItEnds() throws {
        let grant = ConsentGrant(
            recipients: [senior], categories: [.general, .sensitive], validUntil: "2026-11-24T09:00:00+09:00")
        let state = try fields([opening, grant.ops(), ConsentGrant(instance: "c2", recipients: [mental]).ops()])
        #expect(
            Entitlement(of: senior, fields: state, schema: schema, nowMillis: now).categories == [.general, .sensitive])
        #expect(Entitlement(of: mental, fields: state, schema: schema, nowMillis: now).categories == [.general])
        // 2026-11-24T09:00+09:00 is 2026-11-24T00:00Z: a day after `now`.
        let dayLater = now + 86_400_000
        #expect(!Entitlement(of: senior, fields: state, schema: schema, nowMillis: dayLater).receivesCase)
        #expect(Entitlement(of: senior, fields: state, schema: schema, nowMillis: dayLater - 1).receivesCase)
    }

    @Test func withdrawalAndLeavingBothEndIt() throws {
        let grant = ConsentGrant(recipients: [senior, mental])
        let withdrawn = try fields([opening, grant.ops(), [grant.withdrawal(from: senior)]])
        #expect(!Entitlement(of: senior, fields: withdrawn, schema: schema, nowMillis: now).receivesCase)
        #expect(Entitlement(of: mental, fields: withdrawn, schema: schema, nowMillis: now).receivesCase)
        let left = try fields([opening, grant.ops(), [.remove(Entitlement.participants, "mental.centre")]])
        #expect(!Entitlement(of: mental, fields: left, schema: schema, nowMillis: now).receivesCase)
    }

    @Test func aConsentWithoutBasisOrGeneralCategoryCoversNothing() throws {
        let key = { (field: String) in FieldKey(entity: "consent", instance: "c9", field: field) }
        let noBasis: [FieldOperation] = [
            .insert(Entitlement.participants, "senior.centre"), .insert(key("recipients"), "senior.centre"),
            .insert(key("categories"), "general"),
        ]
        #expect(
            !Entitlement(of: senior, fields: try fields([opening, noBasis]), schema: schema, nowMillis: now)
                .receivesCase)
        let onlySensitive = ConsentGrant(recipients: [senior], categories: [.sensitive]).ops()
        #expect(
            !Entitlement(of: senior, fields: try fields([opening, onlySensitive]), schema: schema, nowMillis: now)
                .receivesCase)
    }
}
