import CaseMeshCRDT
import CaseMeshModel
import CaseMeshTestSupport
import Foundation
import Testing

@_spi(Testing) @testable import CaseMeshStore

/// Who may answer a referral and who may hand a case over is decided by every
/// receiver on the change and what it had seen: a change from the wrong
/// institution is quarantined, the right one applies, and this node refuses to
/// write what its peers would quarantine.
@Suite struct RoleRuleTests {
    static let dong = try! ReplicaID("dong.office/server")
    static let senior = try! ReplicaID("senior.centre/laptop-1")
    static let mental = try! ReplicaID("mental.centre/server")

    /// A case led by the dong office with the senior and mental health centres taking part.
    func jointCase() throws -> (CaseStore, CaseID) {
        let store = try CaseStore.inMemory(replicaID: Self.dong)
        var generator = SeededGenerator(seed: 14)
        let opened = try store.openCase(
            ops: [.insert(CaseField.participants, "senior.centre"), .insert(CaseField.participants, "mental.centre")],
            using: &generator)
        return (store, opened.caseID)
    }

    func change(_ store: CaseStore, _ caseID: CaseID, from origin: ReplicaID, seq: UInt64 = 1, _ ops: [FieldOperation])
        throws -> Change
    {
        Change(
            caseID: caseID, origin: origin, seq: seq, hlc: HybridTimestamp(physical: SystemWallClock().nowMillis()),
            context: try store.snapshot(of: caseID).version, ops: ops)
    }

    @Test func onlyTheReceivingInstitutionMayAnswerAReferral() throws {
        let (store, caseID) = try jointCase()
        try store.write(
            caseID: caseID,
            ops: [
                .assign(CaseField.referral("r1", "to"), .string("senior.centre")),
                .assign(CaseField.referral("r1", "progress"), .string("requested")),
            ])
        let accept = ReferralEvent(status: .accepted, institution: "mental.centre", by: "x", reason: nil)
        // The mental health centre takes part in the case, but the referral is not to it.
        let wrong = try change(
            store, caseID, from: Self.mental,
            [
                .assign(CaseField.referral("r1", "progress"), .string("accepted")),
                .append(CaseField.referral("r1", "events"), accept.text),
            ])
        let refused = try store.apply([wrong])
        #expect(refused.applied == 0)
        #expect(
            refused.rejected.map(\.reason) == [
                "quarantined: only the receiving institution (senior.centre) may accept or decline referral r1, "
                    + "not mental.centre"
            ])
        #expect(try store.snapshot(of: caseID).string(CaseField.referral("r1", "progress")) == "requested")
        // Through the legacy status register too.
        let legacy = try change(
            store, caseID, from: try ReplicaID("mental.centre/laptop-2"),
            [.assign(CaseField.referral("r1", "status"), .string("accepted"))])
        #expect(try store.apply([legacy]).applied == 0)
        // The receiver's answer applies.
        let right = try change(
            store, caseID, from: Self.senior, [.assign(CaseField.referral("r1", "progress"), .string("accepted"))])
        #expect(try store.apply([right]).applied == 1)
        #expect(try store.snapshot(of: caseID).string(CaseField.referral("r1", "progress")) == "accepted")
        #expect(try store.quarantined().count == 2)
    }

    @Test func aNodeDoesNotWriteAnAnswerItsPeersWouldQuarantine() throws {
        let (store, caseID) = try jointCase()
        try store.write(caseID: caseID, ops: [.assign(CaseField.referral("r1", "to"), .string("senior.centre"))])
        #expect {
            try store.write(caseID: caseID, ops: [.assign(CaseField.referral("r1", "progress"), .string("declined"))])
        } throws: { ($0 as? StoreError)?.message.contains("only the receiving institution") == true }
        // Writing it anyway (as a modified node would) is possible only through the testing path.
        let forced = try store.writeSkippingRoleRule(
            caseID: caseID, ops: [.assign(CaseField.referral("r1", "progress"), .string("declined"))])
        #expect(forced.ops.count == 1)
    }

    @Test func theLeadChangesOnlyByAnAcceptedHandover() throws {
        let (store, caseID) = try jointCase()
        let offer = HandoverOffer(to: "senior.centre", from: "dong.office", by: "lee", reason: nil, status: .offered)
        let accepted = HandoverOffer(
            to: "senior.centre", from: "dong.office", by: "kim", reason: nil, status: .accepted)
        // A participant takes the lead without an offer.
        let seized = try change(
            store, caseID, from: try ReplicaID("senior.centre/server"),
            [
                .assign(CaseField.leadInstitution, .string("senior.centre")),
                .assign(CaseField.handoverOffer, .string(accepted.text)),
            ])
        #expect(
            try store.apply([seized]).rejected.first?.reason.contains("no handover of the case to senior.centre")
                == true)
        // A participant that does not lead offers the case to itself.
        let selfOffer = try change(
            store, caseID, from: Self.mental,
            [
                .assign(
                    CaseField.handoverOffer,
                    .string(
                        HandoverOffer(to: "mental.centre", from: "dong.office", by: "x", reason: nil, status: .offered)
                            .text))
            ])
        #expect(try store.apply([selfOffer]).rejected.first?.reason.contains("does not lead the case") == true)
        // The lead offers; the offered institution accepts, having seen the offer.
        try store.write(caseID: caseID, ops: [.assign(CaseField.handoverOffer, .string(offer.text))])
        let otherAnswer = try change(
            store, caseID, from: try ReplicaID("mental.centre/laptop-2"),
            [
                .assign(CaseField.handoverOffer, .string(accepted.text)),
                .assign(CaseField.leadInstitution, .string("mental.centre")),
            ])
        #expect(try store.apply([otherAnswer]).applied == 0, "an institution not offered the case cannot take it")
        let accept = try change(
            store, caseID, from: Self.senior, seq: 1,
            [
                .assign(CaseField.handoverOffer, .string(accepted.text)),
                .assign(CaseField.leadInstitution, .string("senior.centre")),
            ])
        #expect(try store.apply([accept]).applied == 1)
        #expect(try store.snapshot(of: caseID).string(CaseField.leadInstitution) == "senior.centre")
        // The former lead may no longer offer it.
        #expect {
            try store.write(caseID: caseID, ops: [.assign(CaseField.handoverOffer, .string(offer.text))])
        } throws: { ($0 as? StoreError)?.message.contains("does not lead the case (senior.centre)") == true }
    }
}

extension CaseSnapshot {
    func string(_ key: FieldKey) -> String? {
        guard case .register(let register)? = fields[key] else { return nil }
        return register.value?.description
    }
}
