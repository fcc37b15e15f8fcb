public import CaseMeshModel
public import CaseMeshNet
import Foundation
public import X509

/// The consortium directory as `casemesh-ca directory` publishes it: one JSON file,
/// `{"format": 1, "payload": BASE64, "signature": BASE64}`, where the payload is the
/// directory's JSON (``ConsortiumDirectory``) and the signature is the CA key's
/// ECDSA P-256 signature over it (`openssl dgst -sha256 -sign`, DER), so it travels
/// like the CRL and any node checks it against the CA certificate it already has.
///
/// Written here rather than as a CMS envelope: swift-certificates verifies X.509
/// signatures but has no CMS parser, and a detached signature over the exact payload
/// bytes is all a node needs.
public enum SignedDirectory {
    /// Checks the signature and parses the directory.
    ///
    /// - Throws: ``NetError`` `badCredentials` naming what is wrong: not an envelope,
    ///   a signature that does not verify against `authority`, or bad content.
    public static func verify(_ bytes: [UInt8], authority: Certificate) throws(NetError) -> ConsortiumDirectory {
        let payload: [UInt8]
        do { payload = try ConsortiumDirectory.payload(ofEnvelope: bytes) } catch {
            throw NetError(code: .badCredentials, message: error.message)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
            let signatureText = object["signature"] as? String,
            let signature = Data(base64Encoded: signatureText)
        else { throw fail("no signature") }
        guard
            authority.publicKey.isValidSignature(
                Array(signature), for: payload, signatureAlgorithm: .ecdsaWithSHA256)
        else { throw fail("the signature does not verify against the consortium CA certificate") }
        do {
            return try ConsortiumDirectory(json: payload)
        } catch {
            throw NetError(code: .badCredentials, message: error.message)
        }
    }

    /// Reads and checks a directory file.
    public static func load(_ path: String, authority: Certificate) throws(NetError) -> ConsortiumDirectory {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NetError(code: .badCredentials, message: "cannot read the consortium directory \(path)")
        }
        do {
            return try verify([UInt8](data), authority: authority)
        } catch {
            throw NetError(code: .badCredentials, message: "\(path): \(error.message)")
        }
    }

    private static func fail(_ reason: String) -> NetError {
        NetError(code: .badCredentials, message: "consortium directory: \(reason)")
    }
}
