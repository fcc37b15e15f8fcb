public import CaseMeshCRDT
import Foundation

/// The lead's offer to hand a case over, the value of `case.handoverOffer`: one
/// register, so two offers made at once (on two replicas of the lead) stand side
/// by side as a conflict, which must be resolved before either is accepted.
public struct HandoverOffer: Hashable, Sendable {
    public enum Status: String, Sendable, CaseIterable {
        case offered, withdrawn, accepted, declined
    }

    /// The institution offered the case.
    public var to: String
    /// The institution leading the case when it offered it.
    public var from: String
    /// The account that wrote this (`이수진 (lee)`).
    public var by: String
    public var reason: String?
    public var status: Status

    public init(to: String, from: String, by: String, reason: String?, status: Status) {
        self.to = to
        self.from = from
        self.by = by
        self.reason = reason
        self.status = status
    }

    /// The register's text: a JSON object with sorted keys.
    public var text: String {
        JSONText.encode(["to": to, "from": from, "by": by, "reason": reason, "status": status.rawValue])
    }

    public init?(text: String) {
        guard let object = JSONText.decode(text), let to = object["to"], let from = object["from"],
            let status = object["status"].flatMap(Status.init(rawValue:))
        else { return nil }
        self.init(to: to, from: from, by: object["by"] ?? "", reason: object["reason"], status: status)
    }
}

/// One event of a referral's life (`referral#r.events`), written together with its
/// `progress` register: requested → accepted or declined (by the receiving
/// institution only) → in progress → done, or withdrawn by the referrer.
public struct ReferralEvent: Hashable, Sendable {
    public enum Status: String, Sendable, CaseIterable {
        case requested, accepted, declined
        case inProgress = "in-progress"
        case done, withdrawn

        /// The statuses only the receiving institution may write.
        public var isAnswer: Bool { self == .accepted || self == .declined }
        /// The statuses after which nothing more happens to the referral.
        public var isFinal: Bool { self == .declined || self == .done || self == .withdrawn }
    }

    public var status: Status
    /// The institution that wrote the event.
    public var institution: String
    public var by: String
    public var reason: String?
    /// On the requested event: the referral made its receiver a participant (it
    /// leaves again if the referral is declined, or withdrawn before an answer).
    public var joined: Bool = false
    /// When (the entry's timestamp; not part of the text).
    public var atMillis: UInt64

    public init(status: Status, institution: String, by: String, reason: String?, atMillis: UInt64 = 0) {
        self.status = status
        self.institution = institution
        self.by = by
        self.reason = reason
        self.atMillis = atMillis
    }

    public var text: String {
        JSONText.encode([
            "status": status.rawValue, "institution": institution, "by": by, "reason": reason,
            "joined": joined ? "true" : nil,
        ])
    }

    public init?(text: String, atMillis: UInt64) {
        guard let object = JSONText.decode(text), let status = object["status"].flatMap(Status.init(rawValue:)),
            let institution = object["institution"]
        else { return nil }
        self.init(
            status: status, institution: institution, by: object["by"] ?? "", reason: object["reason"],
            atMillis: atMillis)
        joined = object["joined"] == "true"
    }
}

/// What a change does to the roles of a case that only some institution may
/// give or take (read by the writer policy of every replica, on the change alone):
/// who leads it, who is offered it, who a referral is addressed to and who answers it.
public enum RoleAct: Hashable, Sendable {
    /// Assigns the lead institution.
    case setsLead(String)
    /// Offers the case to an institution, or withdraws the offer (the lead's act).
    case offers(to: String, status: HandoverOffer.Status)
    /// Accepts or declines the offer made to an institution (that institution's act).
    case answersOffer(to: String, status: HandoverOffer.Status)
    /// Addresses a referral to an institution.
    case addressesReferral(instance: String, to: String)
    /// Accepts or declines a referral (its receiver's act).
    case answersReferral(instance: String)

    /// The role acts of a change, in operation order; empty for nearly every change.
    public static func acts(in change: Change) -> [RoleAct] {
        var acts: [RoleAct] = []
        for op in change.ops {
            switch op {
            case .assign(let field, .string(let value)) where field.entity == "case":
                if field == CaseField.leadInstitution {
                    acts.append(.setsLead(value))
                } else if field == CaseField.handoverOffer {
                    // A value that does not parse is taken as an offer: only the lead may write it.
                    let offer = HandoverOffer(text: value)
                    let status = offer?.status ?? .offered
                    switch status {
                    case .offered, .withdrawn: acts.append(.offers(to: offer?.to ?? "", status: status))
                    case .accepted, .declined: acts.append(.answersOffer(to: offer?.to ?? "", status: status))
                    }
                }
            case .assign(let field, .string(let value)) where field.entity == "referral":
                if field.field == "to" {
                    acts.append(.addressesReferral(instance: field.instance, to: value))
                } else if field.field == "progress", ReferralEvent.Status(rawValue: value)?.isAnswer == true {
                    acts.append(.answersReferral(instance: field.instance))
                } else if field.field == "status", value == "accepted" || value == "declined" {
                    acts.append(.answersReferral(instance: field.instance))
                }
            case .append(let field, let text) where field.entity == "referral" && field.field == "events":
                if ReferralEvent(text: text, atMillis: 0)?.status.isAnswer == true {
                    acts.append(.answersReferral(instance: field.instance))
                }
            default: continue
            }
        }
        return acts
    }
}

/// Small JSON objects of text values with sorted keys: the entries the workflow
/// writes into logs and registers.
enum JSONText {
    static func encode(_ object: [String: String?]) -> String {
        let present = object.compactMapValues { $0 }
        let data = (try? JSONSerialization.data(withJSONObject: present, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func decode(_ text: String) -> [String: String]? {
        guard text.hasPrefix("{"), text.utf8.count <= 100_000,
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        else { return nil }
        return object.compactMapValues { $0 as? String }
    }
}
