public import CaseMeshCRDT
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
