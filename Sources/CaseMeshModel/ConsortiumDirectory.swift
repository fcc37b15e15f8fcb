public import CaseMeshCRDT
import Foundation

/// The consortium's list of member institutions, published by its CA
/// (`casemesh-ca directory`) and signed with the CA's key: who the members are,
/// their Korean names, kinds and regions, the dongs a dong office covers, and each
/// member's nodes with their sync addresses.
///
/// Nodes find their peers in it (the nodes of the institutions they share cases
/// with), shares are refused to an institution not in it, and screens and logs
/// name institutions by it. This type is the directory's content; the signature
/// is checked by `SignedDirectory` (CaseMeshNet) before a node installs it.
public struct ConsortiumDirectory: Hashable, Sendable {
    /// What kind of institution a member is.
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case dongOffice = "dong-office"
        case seniorWelfareCentre = "senior-welfare-centre"
        case mentalHealthCentre = "mental-health-centre"
        case communityWelfareCentre = "community-welfare-centre"
        case integratedCareCentre = "integrated-care-centre"

        /// The kind as case workers say it.
        public var korean: String {
            switch self {
            case .dongOffice: "행정복지센터"
            case .seniorWelfareCentre: "노인복지관"
            case .mentalHealthCentre: "정신건강복지센터"
            case .communityWelfareCentre: "종합사회복지관"
            case .integratedCareCentre: "통합돌봄지원센터"
            }
        }
    }

    /// One node of a member: its replica ID and where it listens for sync.
    public struct Node: Hashable, Sendable {
        public var replica: ReplicaID
        /// `HOST:PORT` or `[IPv6]:PORT`.
        public var address: String
    }

    /// One member institution.
    public struct Member: Hashable, Sendable {
        public var id: InstitutionID
        /// Its Korean name, as screens and logs show it (e.g. 중앙동 행정복지센터).
        public var name: String
        public var kind: Kind
        public var region: String
        /// For a dong office: the dongs whose reports it takes (intake routing).
        public var covers: [String]
        public var nodes: [Node]
    }

    /// Increases with every publication: a node refuses a directory older than the
    /// one it has (a replayed old list cannot bring back a removed member).
    public let serial: Int
    /// When the CA published it (ISO 8601).
    public let issuedAt: String
    public let members: [Member]
    private let index: [InstitutionID: Int]

    /// The most members a directory may list.
    public static let maximumMembers = 10_000

    /// Parses and checks the directory's JSON (the signed payload).
    ///
    /// - Throws: ``ModelError`` `invalidValue` naming the first problem.
    public init(json: [UInt8]) throws(ModelError) {
        func fail(_ reason: String) -> ModelError {
            ModelError(code: .invalidValue, message: "consortium directory: \(reason)")
        }
        guard json.count <= 4 << 20 else { throw fail("larger than 4 MiB") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        guard let serial = object["serial"] as? Int, (1...Int(Int32.max)).contains(serial) else {
            throw fail("'serial' must be a positive integer")
        }
        guard let issuedAt = object["issuedAt"] as? String, !issuedAt.isEmpty, issuedAt.count <= 40 else {
            throw fail("'issuedAt' must be a time")
        }
        guard let list = object["members"] as? [[String: Any]], list.count <= Self.maximumMembers else {
            throw fail("'members' must be a list of at most \(Self.maximumMembers)")
        }
        var members: [Member] = []
        var index: [InstitutionID: Int] = [:]
        var replicas: Set<ReplicaID> = []
        for entry in list {
            func text(_ key: String, limit: Int = 200) throws(ModelError) -> String {
                guard let value = entry[key] as? String, !value.isEmpty, value.count <= limit,
                    !value.contains(where: { $0.isNewline })
                else { throw fail("a member's '\(key)' must be one line of at most \(limit) characters") }
                return value
            }
            let idText = try text("id", limit: 64)
            let id: InstitutionID
            do { id = try InstitutionID(idText) } catch { throw fail(error.message) }
            guard index[id] == nil else { throw fail("\(id) is listed twice") }
            guard let kind = Kind(rawValue: try text("kind", limit: 64)) else {
                throw fail(
                    "\(id): 'kind' must be one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let covers = entry["covers"] as? [String] ?? []
            guard covers.count <= 1000, covers.allSatisfy({ !$0.isEmpty && $0.count <= 64 }) else {
                throw fail("\(id): 'covers' must list dong names")
            }
            var nodes: [Node] = []
            for node in entry["nodes"] as? [[String: Any]] ?? [] {
                guard let replicaText = node["replica"] as? String, let address = node["address"] as? String,
                    address.count <= 300, !address.isEmpty
                else { throw fail("\(id): each node has a 'replica' and an 'address'") }
                let replica: ReplicaID
                do { replica = try ReplicaID(replicaText) } catch { throw fail("\(id): \(error.message)") }
                guard replica.institution == id else {
                    throw fail("\(id) lists node \(replica), which belongs to another institution")
                }
                guard replicas.insert(replica).inserted else { throw fail("node \(replica) is listed twice") }
                nodes.append(Node(replica: replica, address: address))
            }
            guard nodes.count <= 100 else { throw fail("\(id) lists more than 100 nodes") }
            index[id] = members.count
            members.append(
                Member(
                    id: id, name: try text("name"), kind: kind, region: try text("region"), covers: covers,
                    nodes: nodes))
        }
        self.serial = serial
        self.issuedAt = issuedAt
        self.members = members
        self.index = index
    }

    /// The member with this ID, if the consortium has it.
    public func member(_ institution: InstitutionID) -> Member? {
        index[institution].map { members[$0] }
    }

    /// The institution's Korean name, or its ID when the directory does not list it.
    public func name(of institution: InstitutionID) -> String {
        member(institution)?.name ?? institution.rawValue
    }

    /// The dong office covering each dong (for intake routing).
    public var routes: [String: InstitutionID] {
        var routes: [String: InstitutionID] = [:]
        for member in members where member.kind == .dongOffice {
            for dong in member.covers { routes[dong] = member.id }
        }
        return routes
    }

    /// The envelope format `casemesh-ca directory` writes:
    /// `{"format": 1, "payload": BASE64, "signature": BASE64}`.
    public static let envelopeFormat = 1
    /// The largest envelope accepted.
    public static let maximumEnvelopeBytes = 8 << 20

    /// The signed payload of an envelope, its signature unchecked (the signature is
    /// checked by `SignedDirectory` before a node installs a copy in its data
    /// directory; this reads that copy).
    ///
    /// - Throws: ``ModelError`` `invalidValue` when the bytes are not an envelope.
    public static func payload(ofEnvelope bytes: [UInt8]) throws(ModelError) -> [UInt8] {
        func fail(_ reason: String) -> ModelError {
            ModelError(code: .invalidValue, message: "consortium directory: \(reason)")
        }
        guard bytes.count <= maximumEnvelopeBytes else { throw fail("larger than \(maximumEnvelopeBytes >> 20) MiB") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            object["format"] as? Int == envelopeFormat, let text = object["payload"] as? String,
            let payload = Data(base64Encoded: text)
        else { throw fail("not a consortium directory file (format \(envelopeFormat))") }
        return [UInt8](payload)
    }

    /// Reads an installed (already verified) envelope.
    public init(envelope bytes: [UInt8]) throws(ModelError) {
        try self.init(json: try Self.payload(ofEnvelope: bytes))
    }
}
