import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore

/// A form body (`application/x-www-form-urlencoded`), in the order sent; a name
/// may repeat (checkboxes).
///
/// Written here because Hummingbird's `URLEncodedFormDecoder` decodes into a fixed
/// `Decodable` type, and the edit form's field names come from the case schema.
struct WebForm: Sendable {
    var pairs: [(name: String, value: String)] = []

    /// At most 2,000 pairs; a name or value that does not decode as UTF-8 is refused.
    init(bytes: [UInt8]) throws(WebFailure) {
        guard !bytes.isEmpty else { return }
        let parts = bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true)
        guard parts.count <= 2000 else { throw WebFailure(.contentTooLarge, "the form has too many fields") }
        for part in parts {
            let halves = part.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(halves[0]), let value = Self.decode(halves.count > 1 ? halves[1] : [])
            else { throw WebFailure(.badRequest, "the form is not valid UTF-8") }
            pairs.append((name, value))
        }
    }

    static func decode(_ bytes: ArraySlice<UInt8>) -> String? {
        let spaced = bytes.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: " ") : $0 }
        guard let text = String(bytes: spaced, encoding: .utf8) else { return nil }
        return text.removingPercentEncoding
    }

    func first(_ name: String) -> String? { pairs.first { $0.name == name }?.value }

    func all(_ name: String) -> [String] { pairs.filter { $0.name == name }.map(\.value) }
}

/// A web request that cannot be completed: shown as a page (never JSON) with the
/// status, or a redirect (to the login page when the session has ended).
struct WebFailure: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var location: String?

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    static func redirect(_ location: String) -> WebFailure {
        var failure = WebFailure(.seeOther, "")
        failure.location = location
        return failure
    }
}

/// What every page's answer carries: no caching of personal data, a content
/// security policy with no inline script or style and nothing from another host,
/// no framing, no referrer (a case page's address never leaves the node).
enum WebHeaders {
    static let policy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

    static func page(_ html: String, status: HTTPResponse.Status = .ok) -> Response {
        var response = Response(status: status, body: .init(byteBuffer: ByteBuffer(string: html)))
        response.headers[.contentType] = "text/html; charset=utf-8"
        secure(&response.headers)
        return response
    }

    static func secure(_ headers: inout HTTPFields) {
        headers[.cacheControl] = "no-store"
        headers[.contentSecurityPolicy] = policy
        headers[.xContentTypeOptions] = "nosniff"
        headers[.init("X-Frame-Options")!] = "DENY"
        headers[.init("Referrer-Policy")!] = "no-referrer"
    }

    static func redirect(_ location: String, cookies: [String] = []) -> Response {
        var response = Response(status: .seeOther)
        response.headers[.location] = location
        for cookie in cookies { response.headers.append(HTTPField(name: .setCookie, value: cookie)) }
        secure(&response.headers)
        return response
    }

    /// The node's own script and style: no personal data, cached for an hour.
    static func asset(_ bytes: [UInt8], type: String) -> Response {
        var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        response.headers[.contentType] = type
        response.headers[.cacheControl] = "public, max-age=3600"
        response.headers[.xContentTypeOptions] = "nosniff"
        return response
    }
}

/// Cross-site request forgery tokens: a form carries a token derived from the
/// session it was rendered for (HMAC with a key of this process), so a form posted
/// from another site, or for another session, is refused. The login form, before
/// any session, uses a random token also set as a cookie (double submit).
struct CSRFTokens: Sendable {
    let key = SymmetricKey(size: .bits256)

    func token(forSession session: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("casemesh csrf \(session)".utf8), using: key)
        return mac.prefix(20).map { String(format: "%02x", $0) }.joined()
    }

    func check(_ sent: String?, session: String) -> Bool {
        guard let sent else { return false }
        return Self.equal(sent, token(forSession: session))
    }

    static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<20).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// Compares without stopping at the first difference.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}

/// The page templates, compiled once (swift-mustache; `{{name}}` escapes HTML, and
/// no template uses the unescaped form but the layout's already rendered body).
enum WebTemplates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        let sources: [(String, [UInt8])] = [
            ("layout", PackageResources.layout_mustache), ("login", PackageResources.login_mustache),
            ("cases", PackageResources.cases_mustache), ("case", PackageResources.case_mustache),
            ("conflicts", PackageResources.conflicts_mustache), ("share", PackageResources.share_mustache),
            ("sync", PackageResources.sync_mustache), ("error", PackageResources.error_mustache),
            ("tasks", PackageResources.tasks_mustache), ("matches", PackageResources.matches_mustache),
        ]
        for (name, bytes) in sources { try library.register(String(decoding: bytes, as: UTF8.self), named: name) }
        return library
    }

    /// Adds `has_NAME` for every list in a page's data, for templates that wrap a
    /// list in a table only when it has rows.
    static func withFlags(_ data: [String: Any]) -> [String: Any] {
        var flagged = data
        for (key, value) in data {
            if let list = value as? [Any] { flagged["has_\(key)"] = !list.isEmpty }
        }
        return flagged
    }
}

extension CaseStore {
    /// The local edits made since a moment (reads, which are recorded as access-log
    /// changes, not counted), looking back over at most the last `window` changes of
    /// the log: what a field laptop has not yet sent.
    func localEdits(since millis: UInt64, window: UInt64 = 2000) throws(StoreError) -> Int {
        let end = try logEnd()
        var cursor = end > window ? end - window : 1
        var count = 0
        let own = replicaID
        let accessLog = CaseField.accessLog
        while cursor < end {
            let page = try feedPage(from: cursor, maxChanges: 500)
            count +=
                page.changes.filter { change in
                    change.origin == own && change.hlc.physical > millis
                        && change.ops.contains { $0.field != accessLog }
                }.count
            guard page.nextCursor > cursor else { break }
            cursor = page.nextCursor
            if page.isFinal { break }
        }
        return count
    }
}
