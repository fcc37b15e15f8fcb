import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore

/// The case workers' web app, served by every node on its `--http` listener beside
/// `/api/v1`: server-rendered pages (Korean first, English on a switch) over the
/// same store operations, access entries and roles as the API.
///
/// Every page is rendered by the node itself (no script, style or font from another
/// host), so a field laptop's node serves the same screens with the network
/// unplugged.
struct WebApp: Sendable {
    let api: API
    let templates: MustacheLibrary
    let csrf = CSRFTokens()
    var store: CaseStore { api.store }
    var schema: CaseSchema { api.store.schema }

    static let languageCookie = "casemesh_lang"
    static let loginCookie = "casemesh_login_csrf"

    init(api: API) throws {
        self.api = api
        templates = try WebTemplates.library()
    }

    func register(on router: Router<APIRequestContext>) {
        router.get("/") { _, _ in WebHeaders.redirect("/cases") }
        router.get("/static/app.css") { _, _ in
            WebHeaders.asset(PackageResources.app_css, type: "text/css; charset=utf-8")
        }
        router.get("/static/app.js") { _, _ in
            WebHeaders.asset(PackageResources.app_js, type: "text/javascript; charset=utf-8")
        }
        router.get("/login") { request, context in await handle(request, context, needsLogin: false, loginPage) }
        router.post("/login") { request, context in await handle(request, context, needsLogin: false, login) }
        router.post("/logout") { request, context in await handle(request, context, logout) }
        router.get("/lang") { request, context in await handle(request, context, needsLogin: false, language) }
        router.get("/cases") { request, context in await handle(request, context, casesPage) }
        router.get("/cases/{id}") { request, context in await handle(request, context, casePage) }
        router.post("/cases/{id}/note") { request, context in await handle(request, context, addNote) }
        router.post("/cases/{id}/edit") { request, context in await handle(request, context, edit) }
        router.post("/cases/{id}/take") { request, context in await handle(request, context, take) }
        router.get("/conflicts") { request, context in await handle(request, context, conflictsPage) }
        router.get("/cases/{id}/conflicts") { request, context in await handle(request, context, conflictsPage) }
        router.post("/cases/{id}/resolve") { request, context in await handle(request, context, resolve) }
        router.get("/cases/{id}/share") { request, context in await handle(request, context, sharePage) }
        router.post("/cases/{id}/share") { request, context in await handle(request, context, share) }
        router.post("/cases/{id}/withdraw") { request, context in await handle(request, context, withdraw) }
        router.get("/sync") { request, context in await handle(request, context, syncPage) }
        registerCoordination(on: router)
        router.post("/sync") { request, context in await handle(request, context, syncNow) }
    }

    // MARK: One request

    /// What a handler gets: the request, the words of the user's language and, on
    /// every page but the login, the logged-in session.
    struct Call {
        var request: Request
        var context: APIRequestContext
        var t: WebCatalogue
        var session: StaffSession?
        var token: String?

        var account: StaffAccount {
            get throws(WebFailure) {
                guard let session else { throw WebFailure(.unauthorized, "log in first") }
                return session.account
            }
        }

        /// The path and query of this request, for coming back after a login.
        var path: String {
            let path = request.uri.path
            guard let query = request.uri.query, !query.isEmpty else { return path }
            return path + "?" + query
        }
    }

    func handle(
        _ request: Request, _ context: APIRequestContext, needsLogin: Bool = true,
        _ body: (Call) async throws -> Response
    ) async -> Response {
        let t = WebCatalogue.forLanguage(cookie(request, Self.languageCookie))
        var call = Call(request: request, context: context, t: t, session: nil, token: api.token(of: request))
        do {
            if let token = call.token {
                call.session = try store.staffSession(token: token, idleMillis: api.configuration.sessionIdleMillis)
            }
            if needsLogin, call.session == nil {
                // The session ran out (or there was none): back to the login page, and
                // from there back here. A form half-filled on the page stays in the
                // tab (app.js) and is filled in again.
                let back = request.method == .get ? call.path : formReturnPath(request)
                let expired = call.token != nil ? "&expired=1" : ""
                return WebHeaders.redirect("/login?next=\(Self.escapeQuery(back))\(expired)")
            }
            return try await body(call)
        } catch let failure as WebFailure {
            if let location = failure.location { return WebHeaders.redirect(location) }
            return errorPage(call, failure.status, failure.message)
        } catch let problem as Problem {
            return errorPage(call, problem.status, problem.detail)
        } catch let error as StoreError {
            let problem = Problem.from(error)
            if problem.status == .internalServerError {
                api.logger.error("store failure answering a web request", metadata: ["error": "\(error.message)"])
            }
            return errorPage(call, problem.status, problem.detail)
        } catch let refusal as CaseOperations.Refusal {
            let status: HTTPResponse.Status =
                switch refusal.kind {
                case .invalid: .unprocessableContent
                case .notFound: .notFound
                case .conflict: .conflict
                case .forbidden: .forbidden
                }
            return errorPage(call, status, refusal.code.flatMap { call.t.strings["refusal_\($0)"] } ?? refusal.message)
        } catch {
            api.logger.error("unexpected failure answering a web request", metadata: ["error": "\(type(of: error))"])
            return errorPage(
                call, .internalServerError, "the node could not complete the request; its log has the cause")
        }
    }

    /// Where to come back to after logging in again when a form was posted with an
    /// ended session: the case page the form belongs to.
    func formReturnPath(_ request: Request) -> String {
        let parts = request.uri.path.split(separator: "/")
        if parts.count >= 2, parts[0] == "cases" { return "/cases/\(parts[1])" }
        return "/cases"
    }

    func errorPage(_ call: Call, _ status: HTTPResponse.Status, _ message: String) -> Response {
        let back = call.request.uri.path.hasPrefix("/cases/") ? formReturnPath(call.request) : "/cases"
        let text = status == .notFound && message.isEmpty ? call.t["not_found"] : message
        return render(
            call, "error", ["message": text, "back": back], title: call.t["error_title"], page: "error",
            status: status)
    }

    func cookie(_ request: Request, _ name: String) -> String? {
        for cookie in request.headers[values: .cookie].flatMap({ $0.split(separator: ";") }) {
            let parts = cookie.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return String(parts[1]) }
        }
        return nil
    }

    func form(_ call: Call) async throws -> WebForm {
        guard let type = call.request.headers[.contentType],
            type.lowercased().hasPrefix("application/x-www-form-urlencoded")
        else { throw WebFailure(.unsupportedMediaType, "send the form as application/x-www-form-urlencoded") }
        let buffer = try await call.request.body.collect(upTo: api.configuration.maximumBodyBytes)
        return try WebForm(bytes: Array(buffer.readableBytesView))
    }

    /// The form of a logged-in page, its CSRF token checked.
    func checkedForm(_ call: Call) async throws -> WebForm {
        let form = try await form(call)
        guard let token = call.token, csrf.check(form.first("csrf"), session: token) else {
            throw WebFailure(.forbidden, call.t["csrf_failed"])
        }
        return form
    }

    func require(_ call: Call, _ role: StaffRole) throws -> StaffAccount {
        let account = try call.account
        guard account.role >= role else {
            throw WebFailure(.forbidden, call.t.format("forbidden", ["role": call.t.role(role.rawValue)]))
        }
        return account
    }

    func entry(_ action: AccessAction, _ call: Call, via route: String) throws -> AccessRecord {
        let who = try call.account
        return AccessRecord(
            action: action, actor: "\(who.username) (\(who.displayName))", purpose: "case-management",
            via: "web \(route) from \(call.context.originAddress)")
    }

    func caseID(_ call: Call) throws -> CaseID {
        let text = call.context.parameters.get("id") ?? ""
        do { return try CaseID(text) } catch { throw WebFailure(.notFound, call.t["not_found"]) }
    }

    /// A redirect back to a local path only (never to another host).
    static func safePath(_ text: String?) -> String {
        guard let text, text.hasPrefix("/"), !text.hasPrefix("//"), !text.contains("\\"), text.count <= 500,
            !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { return "/cases" }
        return text
    }

    static func escapeQuery(_ text: String) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+?#")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "/cases"
    }

    // MARK: Rendering

    func render(
        _ call: Call, _ template: String, _ data: [String: Any], title: String, page: String, caseID: String = "",
        status: HTTPResponse.Status = .ok, flash: String? = nil
    ) -> Response {
        var data = WebTemplates.withFlags(data)
        data["t"] = call.t.strings
        if let token = call.token, call.session != nil { data["csrf"] = csrf.token(forSession: token) }
        let body = templates.render(data, withTemplate: template) ?? ""
        var layout: [String: Any] = [
            "t": call.t.strings, "title": title, "page": page, "caseID": caseID, "body": body,
            "path": Self.escapeQuery(call.path),
        ]
        if let done = call.request.uri.queryParameters.get("done") { layout["done"] = String(done.prefix(100)) }
        if let flash { layout["flash"] = flash }
        if let session = call.session, let token = call.token {
            let account = session.account
            var user: [String: Any] = [
                "displayName": account.displayName, "roleName": call.t.role(account.role.rawValue),
                "institution": institutionName(store.replicaID.institution.rawValue), "isAdmin": account.role >= .admin,
                "navCases": page == "cases" || page == "case", "navConflicts": page == "conflicts",
                "navSync": page == "sync", "navTasks": page == "tasks",
            ]
            if let conflicts = try? store.figures().openConflicts, conflicts > 0 { user["conflictCount"] = conflicts }
            layout["user"] = user
            layout["csrf"] = csrf.token(forSession: token)
            if let identity = try? store.logIdentity(), let end = try? store.logEnd() {
                layout["cursor"] = "\(identity).\(end)"
            }
            if let banner = offlineBanner(call.t) { layout["offline"] = banner }
        }
        return WebHeaders.page(templates.render(layout, withTemplate: "layout") ?? "", status: status)
    }

    /// On a node with peers that has not synced for two minutes: since when, and how
    /// many of its own edits have not gone out.
    func offlineBanner(_ t: WebCatalogue) -> String? {
        guard let node = api.node, !node.peersToSync().isEmpty, let states = try? store.peerStates() else {
            return nil
        }
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let last = states.compactMap(\.lastSuccessAtMillis).max()
        if let last, now < last + 120_000 { return nil }
        let waiting = (try? store.localEdits(since: last ?? 0)) ?? 0
        guard let last else { return t.format("offline_never", ["count": "\(waiting)"]) }
        return t.format(
            "offline_banner", ["since": t.duration(seconds: Double(now - last) / 1000), "count": "\(waiting)"])
    }

    /// The message of a `done=` marker the redirect after a save carries.
    func flash(_ call: Call) -> String? {
        guard let done = call.request.uri.queryParameters.get("done") else { return nil }
        let keys: [(String, String)] = [
            ("note-", "note_saved"), ("edit-", "saved"), ("take", "taken"), ("resolve", "resolved"),
            ("share-", "shared"), ("withdraw", "withdrawn"), ("none", "no_changes"),
            ("referral", "referral_saved"), ("handover", "handover_saved"), ("conference", "conference_saved"),
            ("link", "link_saved"),
        ]
        return keys.first { done.hasPrefix($0.0) }.map { call.t[$0.1] }
    }

    // MARK: Login

    func loginPage(_ call: Call) async throws -> Response {
        let next = Self.safePath(call.request.uri.queryParameters.get("next").map { String($0) })
        if call.session != nil { return WebHeaders.redirect(next) }
        return loginForm(call, next: next, username: "", error: nil, status: .ok)
    }

    func loginForm(_ call: Call, next: String, username: String, error: String?, status: HTTPResponse.Status)
        -> Response
    {
        let token = CSRFTokens.random()
        var data: [String: Any] = ["csrf": token, "next": next, "username": username]
        let query = call.request.uri.queryParameters
        if let error { data["error"] = error }
        if query.get("expired") != nil { data["notice"] = call.t["session_expired"] }
        if query.get("out") != nil { data["notice"] = call.t["logged_out"] }
        var plain = call
        plain.session = nil
        var response = render(plain, "login", data, title: call.t["login_title"], page: "login", status: status)
        // The login form's own CSRF token: the same value as a cookie (double submit).
        response.headers.append(
            HTTPField(name: .setCookie, value: "\(Self.loginCookie)=\(token); Path=/login; HttpOnly; SameSite=Strict"))
        // A stale session cookie is dropped, so the page is not taken for logged in.
        if call.token != nil, call.session == nil {
            response.headers.append(HTTPField(name: .setCookie, value: "\(API.cookieName)=; Path=/; Max-Age=0"))
        }
        return response
    }

    func login(_ call: Call) async throws -> Response {
        let form = try await form(call)
        let next = Self.safePath(form.first("next"))
        guard let sent = form.first("csrf"), let expected = cookie(call.request, Self.loginCookie),
            CSRFTokens.equal(sent, expected)
        else { return loginForm(call, next: next, username: "", error: call.t["csrf_failed"], status: .forbidden) }
        let username = String((form.first("username") ?? "").prefix(100))
        do {
            let (token, account) = try store.login(username: username, password: form.first("password") ?? "")
            api.logger.info("staff login", metadata: ["account": "\(account.username)", "via": "web"])
            let secure = api.configuration.certificatePath == nil ? "" : "; Secure"
            return WebHeaders.redirect(
                next,
                cookies: [
                    "\(API.cookieName)=\(token); Path=/; HttpOnly; SameSite=Strict\(secure)",
                    "\(Self.loginCookie)=; Path=/login; Max-Age=0",
                ])
        } catch {
            switch error.code {
            case .locked:
                return loginForm(call, next: next, username: username, error: error.message, status: .init(code: 423))
            case .unauthenticated:
                return loginForm(
                    call, next: next, username: username, error: call.t["login_failed"], status: .unauthorized)
            default: throw error
            }
        }
    }

    func logout(_ call: Call) async throws -> Response {
        _ = try await checkedForm(call)
        if let token = call.token { try store.endStaffSession(token: token) }
        return WebHeaders.redirect(
            "/login?out=1", cookies: ["\(API.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"])
    }

    func language(_ call: Call) async throws -> Response {
        let to = call.request.uri.queryParameters.get("to") == "en" ? "en" : "ko"
        let next = Self.safePath(call.request.uri.queryParameters.get("next").map { String($0) })
        return WebHeaders.redirect(
            next, cookies: ["\(Self.languageCookie)=\(to); Path=/; Max-Age=31536000; SameSite=Lax"])
    }
}
