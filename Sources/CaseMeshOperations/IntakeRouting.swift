public import CaseMeshCRDT
import CaseMeshModel
public import CaseMeshStore
import Foundation

/// Where a city-level node sends the reports its intake channels bring: the dong
/// administrative welfare centre that covers the household's dong (`serve
/// --intake-routing FILE`, or else the dongs the consortium directory's dong
/// offices cover).
///
/// The file is JSON: `{"routes": {"중앙동": "dongducheon.jungang-dong", …}}`.
public struct IntakeRouting: Sendable {
    public let routes: [String: InstitutionID]

    /// The statutory basis a routed report is shared under: discovery of households
    /// in crisis (사회보장급여법 §12의2, §42의2), named in the case's consent record.
    public static let basis = "social-security-benefits-act"

    public init(routes: [String: InstitutionID]) {
        var normalised: [String: InstitutionID] = [:]
        for (dong, institution) in routes { normalised[Self.normalise(dong)] = institution }
        self.routes = normalised
    }

    /// Reads the routing file; refuses one that is not JSON, has no routes or names
    /// an invalid institution, naming the entry.
    public init(file path: String) throws(CaseOperations.Refusal) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CaseOperations.Refusal(kind: .invalid, message: "cannot read the intake routing file \(path)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let list = object["routes"] as? [String: String], !list.isEmpty, list.count <= 10_000
        else {
            throw CaseOperations.Refusal(
                kind: .invalid, message: "\(path): expected {\"routes\": {\"DONG\": \"INSTITUTION-ID\", …}}")
        }
        var routes: [String: InstitutionID] = [:]
        for (dong, name) in list {
            do { routes[dong] = try InstitutionID(name) } catch {
                throw CaseOperations.Refusal(
                    kind: .invalid,
                    message: "\(path): '\(dong.prefix(40))' routes to '\(name.prefix(60))': \(error.message)")
            }
        }
        self.init(routes: routes)
    }

    /// The institution covering a dong, or nil for a dong no route names.
    public func institution(forDong dong: String) -> InstitutionID? { routes[Self.normalise(dong)] }

    /// Spaces removed (`생연 1동` and `생연1동` are one dong).
    static func normalise(_ dong: String) -> String { dong.filter { !$0.isWhitespace } }
}

extension CaseOperations {
    /// Opens the case of a channel's report, once per message ID, led by this node's
    /// institution and waiting in its intake queue; at a city-level node with
    /// `routing`, a report whose dong a route names is shared at once with that dong
    /// office under the statutory basis for discovery (``IntakeRouting/basis``, for a
    /// year), and one no route names is tagged `unrouted` for this node's own staff.
    ///
    /// - Returns: the case, whether this call opened it, and where it was routed.
    public func receiveReport(
        channel: String, messageID: String, ops reportOps: [FieldOperation], dong: String?, routing: IntakeRouting?,
        using generator: inout some RandomNumberGenerator, recording record: AccessRecord
    ) throws -> (caseID: CaseID, opened: Bool, routedTo: InstitutionID?) {
        var ops = reportOps + [.insert(CaseField.tags, "intake-new")]
        let own = store.replicaID.institution
        var routedTo: InstitutionID?
        if let routing {
            if let dong, let target = routing.institution(forDong: dong) {
                if target != own { routedTo = target }
            } else {
                ops.append(.insert(CaseField.tags, "unrouted"))
            }
        }
        let (caseID, opened) = try store.openIntakeCase(
            channel: channel, messageID: messageID, ops: ops, using: &generator, recording: record)
        if let routedTo, opened {
            let until = ISOTime.string(millis: store.nowMillis + 365 * 86_400_000, fractionalSeconds: false)
            let grant = try CaseOperations.grant(
                institutions: [routedTo.rawValue], consent: nil, basis: IntakeRouting.basis, categories: ["general"],
                purposes: ["case-management"], until: until, subject: "household", grantor: "subject")
            try store.share(caseID, grant: grant, allowingNew: [routedTo], recording: record)
        }
        return (caseID, opened, routedTo)
    }
}
