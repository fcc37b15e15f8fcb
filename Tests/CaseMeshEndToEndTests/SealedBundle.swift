import CaseMeshCRDT
import CaseMeshStore
import Crypto
import Foundation

/// Bundles written by tests, sealed as their origin would seal them: with the key
/// of a certificate from the test CA.
enum SealedBundle {
    /// The DER bytes of the first certificate in a PEM file.
    static func certificateDER(_ path: String) throws -> [UInt8] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let body = text.components(separatedBy: "-----")[2].replacingOccurrences(of: "\n", with: "")
        return Array(Data(base64Encoded: body)!)
    }

    /// A bundle of `changes`, all written by `origin`, sealed with the certificate
    /// and key in `tls` (as ``TestAuthority/issue(_:)`` returns them), seals numbered
    /// from `firstSeal`.
    static func make(
        _ changes: [Change], origin: ReplicaID, tls: [String], schemaVersion: Int, createdAtMillis: UInt64,
        firstSeal: UInt64 = 1
    ) throws -> ChangeBundle {
        let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: tls[3], encoding: .utf8))
        var leaves: [SealLeaf?] = []
        var seals: [Seal] = []
        var start = 0
        while start < changes.count {
            let run = changes[start..<min(start + Seal.maximumLeaves, changes.count)]
            let number = firstSeal + UInt64(seals.count)
            let digests = run.map { SealDigest.leaf(of: $0) }
            let signature = try key.signature(for: Seal.message(origin: origin, number: number, leaves: digests))
            leaves += run.indices.map { SealLeaf(seal: seals.count, leaf: $0 - start) }
            seals.append(
                Seal(
                    origin: origin, number: number, leafCount: run.count, signature: Array(signature.rawRepresentation),
                    digests: [:]))
            start += run.count
        }
        return ChangeBundle(
            schemaVersion: schemaVersion, source: origin, recipient: nil, createdAtMillis: createdAtMillis,
            changes: changes.map { $0.encoded() }, leaves: leaves, seals: seals,
            certificates: [origin: try certificateDER(tls[1])])
    }
}
