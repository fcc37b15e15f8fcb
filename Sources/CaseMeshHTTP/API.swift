import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The routes of `/api/v1` and what each does. Every route that touches a case
/// goes through the store's operations with an access entry naming the logged-in
/// account and the client's address.
struct API: Sendable {
    let store: CaseStore
    let node: Node?
    let configuration: APIConfiguration
    let logger: Logger
    let slots: RequestSlots
    var operations: CaseOperations { CaseOperations(store: store) }

    static let cookieName = "casemesh_session"

    /// Every route: method, path (Hummingbird's `{parameter}` form) and the role it
    /// needs (nil: no login). The OpenAPI document is checked against this list.
    static let routes: [(method: String, path: String, role: StaffRole?)] =
        [
            ("POST", "/api/v1/session", nil), ("GET", "/api/v1/session", .caseworker),
            ("DELETE", "/api/v1/session", .caseworker),
            ("GET", "/api/v1/cases", .caseworker), ("POST", "/api/v1/cases", .caseworker),
            ("GET", "/api/v1/cases/{id}", .caseworker), ("POST", "/api/v1/cases/{id}/changes", .caseworker),
            ("GET", "/api/v1/conflicts", .caseworker), ("POST", "/api/v1/cases/{id}/resolve", .supervisor),
            ("POST", "/api/v1/cases/{id}/stage", .caseworker),
            ("POST", "/api/v1/cases/{id}/share", .supervisor), ("POST", "/api/v1/cases/{id}/withdraw", .supervisor),
            ("GET", "/api/v1/cases/{id}/access-log", .supervisor), ("GET", "/api/v1/reports/monthly", .supervisor),
            ("GET", "/api/v1/quarantine", .admin), ("GET", "/api/v1/peers", .admin),
            ("POST", "/api/v1/persons/identify", .caseworker), ("POST", "/api/v1/persons/find", .caseworker),
            ("POST", "/api/v1/intake", nil), ("GET", "/api/v1/changes", .caseworker),
            ("GET", "/api/v1/openapi.json", nil),
        ] + coordinationRoutes

    func register(on router: Router<APIRequestContext>) {
        let api = router.group("/api/v1")
        api.post("session") { request, context in try await login(request, context) }
        api.get("session") { request, context in
            let session = try authenticate(request, .caseworker)
            return json(.ok, account(session.account))
        }
        api.delete("session") { request, context in
            _ = try authenticate(request, .caseworker)
            if let token = token(of: request) { try store.endStaffSession(token: token) }
            var response = Response(status: .noContent)
            response.headers[.setCookie] = "\(Self.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            return response
        }
        api.get("cases") { request, context in try listCases(request, try authenticate(request, .caseworker), context) }
        api.post("cases") { request, context in
            try await openCase(request, try authenticate(request, .caseworker), context)
        }
        api.get("cases/{id}") { request, context in
            let session = try authenticate(request, .caseworker)
            let caseID = try caseID(context)
            let snapshot = try store.read(caseID, recording: entry(.read, session, context, via: "GET /cases/{id}"))
            return json(.ok, CaseJSON.detail(snapshot, schema: store.schema))
        }
        api.post("cases/{id}/changes") { request, context in
            try await applyChange(request, try authenticate(request, .caseworker), context)
        }
        api.get("conflicts") { request, context in
            let session = try authenticate(request, .caseworker)
            // A case withdrawn from this institution is held only until its own edits
            // have gone out: not shown.
            let conflicts = try store.openConflicts().filter { try store.withdrawal(of: $0.caseID) == nil }
            try store.recordAccess(
                to: Array(Set(conflicts.map(\.caseID))).sorted(), entry(.read, session, context, via: "GET /conflicts"))
            return json(.ok, .object(["conflicts": .array(conflicts.map(CaseJSON.conflict))]))
        }
        api.post("cases/{id}/resolve") { request, context in
            let session = try authenticate(request, .supervisor)
            let body = try await object(request, allowed: ["field", "value"])
            let change = try withRefusals {
                try operations.resolve(
                    caseID: try caseID(context), field: try string(body, "field"), value: try valueText(body, "value"),
                    recording: entry(.write, session, context, via: "POST /cases/{id}/resolve"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/stage") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["to", "reason"])
            let reason = body["reason"]?.stringValue
            guard (reason?.count ?? 0) <= 500 else {
                throw Problem(.unprocessableContent, "'reason' is at most 500 characters")
            }
            let who = session.account
            let change = try withRefusals {
                try operations.moveStage(
                    caseID: try caseID(context), to: try string(body, "to"), reason: reason,
                    by: "\(who.displayName) (\(who.username))",
                    recording: entry(.write, session, context, via: "POST /cases/{id}/stage"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/share") { request, context in
            let session = try authenticate(request, .supervisor)
            let body = try await object(
                request,
                allowed: [
                    "institutions", "consent", "basis", "categories", "purposes", "until", "subject", "grantor",
                    "allowNewInstitution",
                ])
            let grant = try CaseOperations.grant(
                institutions: try strings(body, "institutions"), consent: body["consent"]?.stringValue,
                basis: body["basis"]?.stringValue ?? "consent",
                categories: try optionalStrings(body, "categories") ?? ["general"],
                purposes: try optionalStrings(body, "purposes") ?? ["case-management"],
                until: body["until"]?.stringValue, subject: body["subject"]?.stringValue ?? "household",
                grantor: body["grantor"]?.stringValue ?? "subject")
            var allowed: Set<InstitutionID> = []
            for text in try optionalStrings(body, "allowNewInstitution") ?? [] {
                do { allowed.insert(try InstitutionID(text)) } catch {
                    throw Problem(.unprocessableContent, "\(error)")
                }
            }
            let change = try store.share(
                try caseID(context), grant: grant, allowingNew: allowed,
                recording: entry(.write, session, context, via: "POST /cases/{id}/share"))
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/withdraw") { request, context in
            let session = try authenticate(request, .supervisor)
            let body = try await object(request, allowed: ["institution"])
            let institution: InstitutionID
            do { institution = try InstitutionID(try string(body, "institution")) } catch let error as CRDTError {
                throw Problem(.unprocessableContent, error.message)
            }
            let change = try store.withdraw(
                try caseID(context), from: institution,
                recording: entry(.write, session, context, via: "POST /cases/{id}/withdraw"))
            return json(.created, CaseJSON.change(change))
        }
        api.get("cases/{id}/access-log") { request, context in
            _ = try authenticate(request, .supervisor)
            let entries = try store.accessLog(of: try caseID(context))
            return json(.ok, .object(["entries": .array(entries.map(CaseJSON.access))]))
        }
        api.get("reports/monthly") { request, context in
            _ = try authenticate(request, .supervisor)
            let month = request.uri.queryParameters.get("month").map { String($0) } ?? ""
            let report = try withRefusals {
                try MonthlyReport.build(store: store, month: month, now: UInt64(Date().timeIntervalSince1970 * 1000))
            }
            return json(.ok, report.json)
        }
        api.get("quarantine") { request, context in
            _ = try authenticate(request, .admin)
            let all = request.uri.queryParameters.get("all") == "true"
            return json(
                .ok,
                .object(["changes": .array(try store.quarantined(includingResolved: all).map(CaseJSON.quarantined))]))
        }
        api.get("peers") { request, context in
            _ = try authenticate(request, .admin)
            return json(.ok, .object(["peers": .array(try store.peerStates().map(CaseJSON.peer))]))
        }
        // Resident registration numbers travel only in request bodies (never in a URL or
        // a log line) and are kept only as their keyed hash.
        api.post("persons/identify") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["case", "person", "residentNumber"])
            let caseID: CaseID
            do { caseID = try CaseID(try string(body, "case")) } catch let error as CRDTError {
                throw Problem(.unprocessableContent, error.message)
            }
            let change = try operations.identify(
                caseID: caseID, person: try string(body, "person"), number: try string(body, "residentNumber"),
                hasher: try hasher(), recording: entry(.write, session, context, via: "POST /persons/identify"))
            return json(.created, CaseJSON.change(change))
        }
        api.post("persons/find") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["residentNumber"])
            let found = try operations.findPerson(
                number: try string(body, "residentNumber"), hasher: try hasher(),
                recording: entry(.read, session, context, via: "POST /persons/find"))
            return json(
                .ok,
                .object([
                    "matches": .array(
                        found.map { .object(["case": .string($0.caseID.rawValue), "person": .string($0.person)]) })
                ]))
        }
        registerCoordination(on: api)
        api.post("intake") { request, context in try await intake(request, context) }
        api.get("changes") { request, context in try changes(request, try authenticate(request, .caseworker)) }
        api.get("openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
    }

    func hasher() throws -> ResidentNumberHasher {
        guard let hasher = configuration.residentNumberHasher else {
            throw Problem(
                .serviceUnavailable,
                "this node has no consortium secret for resident numbers (serve --resident-number-secret FILE)")
        }
        return hasher
    }

    // MARK: Sessions

    func token(of request: Request) -> String? {
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            return String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
        }
        for cookie in request.headers[values: .cookie].flatMap({ $0.split(separator: ";") }) {
            let parts = cookie.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == Self.cookieName { return String(parts[1]) }
        }
        return nil
    }

    /// The logged-in session of a request, with at least `role`.
    func authenticate(_ request: Request, _ role: StaffRole) throws -> StaffSession {
        guard let token = token(of: request),
            let session = try store.staffSession(token: token, idleMillis: configuration.sessionIdleMillis)
        else {
            throw Problem(
                .unauthorized, "log in first (POST /api/v1/session); a session ends after 30 minutes unused",
                headers: [.wwwAuthenticate: "Bearer"])
        }
        guard session.account.role >= role else {
            throw Problem(
                .forbidden,
                "this needs the \(role.rawValue) role; \(session.account.username) is a \(session.account.role.rawValue)"
            )
        }
        return session
    }

    func login(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let body = try await object(request, allowed: ["username", "password"])
        let (token, account) = try store.login(
            username: try string(body, "username"), password: try string(body, "password"))
        var response = json(
            .created,
            .object([
                "token": .string(token), "account": self.account(account),
                "idleTimeoutSeconds": .number(Int64(configuration.sessionIdleMillis / 1000)),
            ]))
        response.headers[.setCookie] =
            "\(Self.cookieName)=\(token); Path=/; HttpOnly; SameSite=Strict"
            + (configuration.certificatePath == nil ? "" : "; Secure")
        logger.info("staff login", metadata: ["account": "\(account.username)"])
        return response
    }

    func account(_ account: StaffAccount) -> JSONValue {
        .object([
            "username": .string(account.username), "displayName": .string(account.displayName),
            "role": .string(account.role.rawValue), "institution": .string(store.replicaID.institution.rawValue),
        ])
    }

    /// The access entry of a request: the account, its name and the client's address.
    func entry(_ action: AccessAction, _ session: StaffSession, _ context: APIRequestContext, via route: String)
        -> AccessRecord
    {
        let who = session.account
        return AccessRecord(
            action: action, actor: "\(who.username) (\(who.displayName))", purpose: "case-management",
            via: "api \(route) from \(context.originAddress)")
    }

    // MARK: Cases

    func caseID(_ context: APIRequestContext) throws -> CaseID {
        let text = context.parameters.get("id") ?? ""
        do { return try CaseID(text) } catch { throw Problem(.notFound, "no case '\(text.prefix(40))' on this node") }
    }

    func listCases(_ request: Request, _ session: StaffSession, _ context: APIRequestContext) throws -> Response {
        let query = request.uri.queryParameters
        let known: Set<String> = [
            "stage", "risk", "participant", "q", "conflicts", "limit", "offset", "overdue", "due_within", "manager",
        ]
        if let unknown = query.map({ String($0.key) }).first(where: { !known.contains($0) }) {
            throw Problem(.badRequest, "unknown query parameter '\(unknown.prefix(40))'")
        }
        let limit = try number(query.get("limit"), name: "limit", default: 50, range: 1...500)
        let offset = try number(query.get("offset"), name: "offset", default: 0, range: 0...10_000_000)
        var filter = CaseListFilter(
            stage: query.get("stage"), riskLevel: query.get("risk"), participant: query.get("participant"),
            conflictsOnly: query.get("conflicts") == "true", text: query.get("q"), caseManager: query.get("manager"))
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        if query.get("due_within") != nil {
            let days = try number(query.get("due_within"), name: "due_within", default: 3, range: 0...60)
            filter.deadlineBefore = CaseWorkflow.dueSoonBound(now: now, workingDays: days)
        }
        if query.get("overdue") == "true" { filter.deadlineBefore = min(filter.deadlineBefore ?? now, now) }
        let result = try store.caseSummaries(matching: filter, limit: limit, offset: offset)
        let page = result.cases
        try store.recordAccess(to: page.map(\.caseID), entry(.read, session, context, via: "GET /cases"))
        return json(
            .ok,
            .object([
                "cases": .array(page.map(CaseJSON.summary)), "total": .number(Int64(result.total)),
                "limit": .number(Int64(limit)), "offset": .number(Int64(offset)),
            ]))
    }

    func openCase(_ request: Request, _ session: StaffSession, _ context: APIRequestContext) async throws -> Response {
        let body = try await object(request, allowed: ["fields"])
        var ops: [FieldOperation] = []
        if let fields = body["fields"] {
            guard case .object(let members) = fields else { throw Problem(.badRequest, "'fields' must be an object") }
            for (field, value) in members.sorted(by: { $0.key < $1.key }) {
                ops.append(try operation(["op": .string(defaultOp(field)), "field": .string(field), "value": value]))
            }
        }
        var generator = SystemRandomNumberGenerator()
        let change = try store.openCase(
            ops: ops, using: &generator, recording: entry(.open, session, context, via: "POST /cases"))
        // A warning when a person of the new case may be someone another case is about.
        var answer = CaseJSON.change(change)
        if ops.contains(where: { $0.field.entity == "person" }), case .object(var members) = answer {
            let matches = try operations.personMatches(
                caseID: change.caseID, recording: entry(.read, session, context, via: "POST /cases"))
            members["possibleMatches"] = .array(
                matches.map {
                    .object([
                        "person": .string($0.person), "case": .string($0.otherCase.rawValue),
                        "otherPerson": .string($0.otherPerson), "basis": .string($0.basis),
                    ])
                })
            answer = .object(members)
        }
        var response = json(.created, answer)
        response.headers[.location] = "/api/v1/cases/\(change.caseID)"
        return response
    }

    /// `insert` for a set field, `append` for a log, `assign` otherwise.
    func defaultOp(_ field: String) -> String {
        guard let key = try? FieldKey(parsing: field), let definition = try? store.schema.definition(of: key) else {
            return "assign"
        }
        switch definition.kind {
        case .set: return "insert"
        case .log: return "append"
        case .register: return "assign"
        }
    }

    func applyChange(_ request: Request, _ session: StaffSession, _ context: APIRequestContext) async throws
        -> Response
    {
        let body = try await object(request, allowed: ["operations"])
        guard case .array(let items)? = body["operations"], !items.isEmpty else {
            throw Problem(.badRequest, "'operations' must be a non-empty array")
        }
        guard items.count <= 100 else { throw Problem(.badRequest, "at most 100 operations in one change") }
        let ops = try items.map { item throws in
            guard case .object(let members) = item else { throw Problem(.badRequest, "each operation is an object") }
            return try operation(members)
        }
        let caseID = try caseID(context)
        // An open conflict is a supervisor's to decide: a case worker's assignment
        // would silently pick a side.
        if session.account.role < .supervisor, ops.contains(where: { if case .assign = $0 { true } else { false } }) {
            let conflicted = Set(try store.snapshot(of: caseID).conflicts)
            if let field = ops.first(where: {
                if case .assign(let key, _) = $0 { conflicted.contains(key) } else { false }
            })?.field {
                throw Problem(
                    .conflict,
                    "\(field) has an open conflict; a supervisor decides it (POST /api/v1/cases/{id}/resolve)")
            }
        }
        let change = try store.write(
            caseID: caseID, ops: ops, recording: entry(.write, session, context, via: "POST /cases/{id}/changes"))
        return json(.created, CaseJSON.change(change))
    }

    /// One field operation from its JSON form, checked against the schema.
    func operation(_ members: [String: JSONValue]) throws -> FieldOperation {
        let allowed: Set<String> = ["op", "field", "value", "text", "element"]
        if let unknown = members.keys.first(where: { !allowed.contains($0) }) {
            throw Problem(.badRequest, "unknown member '\(unknown.prefix(40))' in an operation")
        }
        let fieldText = try string(.object(members), "field")
        let field: FieldKey
        do { field = try FieldKey(parsing: fieldText) } catch { throw Problem(.unprocessableContent, error.message) }
        let op: FieldOperation
        switch try string(.object(members), "op") {
        case "assign":
            guard let raw = members["value"] else { throw Problem(.badRequest, "'assign' needs a 'value'") }
            let value: Value
            switch raw {
            case .string(let text): value = try CaseStore.wrapInput { try store.schema.parseValue(text, for: field) }
            case .number(let number): value = .integer(number)
            case .bool(let flag): value = .boolean(flag)
            default: throw Problem(.badRequest, "'value' of \(field) must be a string, an integer or a boolean")
            }
            op = .assign(field, value)
        case "append": op = .append(field, try string(.object(members), "text", fallback: "value"))
        case "insert": op = .insert(field, try string(.object(members), "element", fallback: "value"))
        case "remove": op = .remove(field, try string(.object(members), "element", fallback: "value"))
        case let other:
            throw Problem(.badRequest, "unknown op '\(other.prefix(20))': use assign, append, insert or remove")
        }
        try CaseStore.wrapInput { try store.schema.validate(op) }
        return op
    }

    // MARK: Intake

    /// Channels' reports: one JSON shape for every channel, authenticated by the
    /// channel's API key, idempotent on the channel's message ID.
    func intake(_ request: Request, _ context: APIRequestContext) async throws -> Response {
        let key = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let key, let channel = try store.intakeChannel(key: key) else {
            throw Problem(
                .unauthorized,
                "an intake channel's API key is required (Authorization: Bearer KEY; "
                    + "casemesh intake-key add CHANNEL)", headers: [.wwwAuthenticate: "Bearer"])
        }
        let body = try await object(
            request,
            allowed: [
                "messageId", "channel", "receivedAt", "summary", "crisisSignals", "reporter", "address", "dong",
                "title", "riskLevel",
            ])
        let messageID = try string(body, "messageId")
        guard (1...200).contains(messageID.count) else {
            throw Problem(.unprocessableContent, "'messageId' is 1 to 200 characters")
        }
        var ops: [FieldOperation] = []
        func assign(_ field: String, _ text: String?) throws {
            guard let text, !text.isEmpty else { return }
            ops.append(try operation(["op": .string("assign"), "field": .string(field), "value": .string(text)]))
        }
        try assign("report.channel", try string(body, "channel"))
        try assign("report.receivedAt", body["receivedAt"]?.stringValue ?? CaseJSON.isoNow())
        try assign("report.summary", body["summary"]?.stringValue)
        try assign("report.reporter", body["reporter"]?.stringValue)
        try assign("household.address", body["address"]?.stringValue)
        try assign("household.dong", body["dong"]?.stringValue)
        try assign("title", body["title"]?.stringValue ?? body["summary"]?.stringValue.map { String($0.prefix(60)) })
        try assign("riskLevel", body["riskLevel"]?.stringValue)
        try assign("stage", "discovery")
        for signal in try optionalStrings(body, "crisisSignals") ?? [] {
            ops.append(
                try operation([
                    "op": .string("insert"), "field": .string("report.crisisSignals"), "value": .string(signal),
                ]))
        }
        // The routing file, or else the dongs the consortium directory's dong offices cover.
        let covered = (try? store.memberDirectory())?.routes ?? [:]
        var generator = SystemRandomNumberGenerator()
        let record = AccessRecord(
            action: .open, actor: "intake channel \(channel)", purpose: "case-management",
            via: "api POST /intake from \(context.originAddress)")
        let (caseID, opened, routedTo) = try operations.receiveReport(
            channel: channel, messageID: messageID, ops: ops, dong: body["dong"]?.stringValue,
            routing: configuration.intakeRouting ?? (covered.isEmpty ? nil : IntakeRouting(routes: covered)),
            using: &generator, recording: record)
        var answer: [String: JSONValue] = ["case": .string(caseID.rawValue), "opened": .bool(opened)]
        if let routedTo {
            if opened {
                logger.info(
                    "intake report routed",
                    metadata: ["case": "\(caseID)", "to": "\(routedTo)", "channel": "\(channel)"])
            }
            answer["routedTo"] = .string(routedTo.rawValue)
        }
        var response = json(opened ? .created : .ok, .object(answer))
        response.headers[.location] = "/api/v1/cases/\(caseID)"
        return response
    }

    // MARK: Change feed

    /// `GET /api/v1/changes?since=CURSOR`: JSON pages, or Server-Sent Events with
    /// `Accept: text/event-stream` (one event per page, its id the cursor to resume).
    func changes(_ request: Request, _ session: StaffSession) throws -> Response {
        let identity = try store.logIdentity()
        let since =
            request.uri.queryParameters.get("since") ?? request.headers[HTTPField.Name("Last-Event-ID")!]
            ?? "\(identity).1"
        let cursor = try feedCursor(since, identity: identity)
        let showAccessLogs = session.account.role >= .supervisor
        let store = store
        guard request.headers[.accept]?.contains("text/event-stream") == true else {
            let page = try ChangeFeed.page(store: store, from: cursor, identity: identity, accessLogs: showAccessLogs)
            return json(.ok, page.json)
        }
        let idle = configuration.sessionIdleMillis
        let token = token(of: request) ?? ""
        // The stream keeps a request slot while it lasts.
        slots.hold()
        let slots = slots
        let body = ResponseBody { writer in
            defer { slots.release() }
            var next = cursor
            // Bounded: the stream ends after an hour (the client reconnects with its
            // cursor), when the session ends, or when the node shuts down.
            let deadline = ContinuousClock.now + .seconds(3600)
            let stopping = ShutdownFlag()
            try await withGracefulShutdownHandler {
                try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
                var beats = 0
                while ContinuousClock.now < deadline, !Task.isCancelled, !stopping.isSet {
                    let page = try ChangeFeed.page(
                        store: store, from: next, identity: identity, accessLogs: showAccessLogs)
                    if !page.changes.isEmpty || page.cursor != next {
                        let text = "id: \(identity).\(page.cursor)\nevent: changes\ndata: \(page.json.text)\n\n"
                        try await writer.write(ByteBuffer(string: text))
                        next = page.cursor
                        if !page.isFinal { continue }
                    }
                    beats += 1
                    // A comment every 2 s: a client that went away is noticed (the
                    // write fails) and its request slot freed within that.
                    if beats % 8 == 0 { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                    if beats % 60 == 0 {
                        guard (try? store.staffSession(token: token, idleMillis: max(idle, 3_600_000))) != nil else {
                            break
                        }
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
            } onGracefulShutdown: {
                stopping.set()
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store", .init("X-Accel-Buffering")!: "no"],
            body: body)
    }

    func feedCursor(_ text: String, identity: String) throws -> UInt64 {
        let parts = text.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let number = UInt64(parts[1]), number >= 1, number <= UInt64(Int64.max) else {
            throw Problem(.badRequest, "a cursor is LOG.NUMBER, as a feed page's 'cursor' gives it")
        }
        guard parts[0] == identity else {
            throw Problem(
                .gone,
                "the cursor refers to a change log this node no longer holds (it was restored or re-created); "
                    + "start again without 'since' and reload what you keep")
        }
        let end = try store.logEnd()
        guard number <= end else {
            throw Problem(.badRequest, "the cursor is past the end of this node's log (\(end))")
        }
        return number
    }

    // MARK: Bodies and answers

    func object(_ request: Request, allowed: Set<String>) async throws -> JSONValue {
        let buffer = try await request.body.collect(upTo: configuration.maximumBodyBytes)
        let bytes = Array(buffer.readableBytesView)
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") else {
            throw Problem(.unsupportedMediaType, "send the body as application/json")
        }
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(bytes) } catch { throw Problem(.badRequest, "the body is not valid JSON") }
        guard case .object(let members) = parsed else { throw Problem(.badRequest, "the body must be a JSON object") }
        if let unknown = members.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw Problem(.badRequest, "unknown member '\(unknown.prefix(40))' in the body")
        }
        return parsed
    }

    func string(_ body: JSONValue, _ name: String, fallback: String? = nil) throws -> String {
        if let text = body[name]?.stringValue { return text }
        if let fallback, let text = body[fallback]?.stringValue { return text }
        if body[name] == nil { throw Problem(.badRequest, "'\(name)' is required") }
        throw Problem(.badRequest, "'\(name)' must be a string")
    }

    func valueText(_ body: JSONValue, _ name: String) throws -> String {
        switch body[name] {
        case .string(let text)?: return text
        case .number(let number)?: return String(number)
        case .bool(let flag)?: return flag ? "true" : "false"
        case nil: throw Problem(.badRequest, "'\(name)' is required")
        default: throw Problem(.badRequest, "'\(name)' must be a string, an integer or a boolean")
        }
    }

    func strings(_ body: JSONValue, _ name: String) throws -> [String] {
        guard let list = try optionalStrings(body, name), !list.isEmpty else {
            throw Problem(.badRequest, "'\(name)' must be a non-empty array of strings")
        }
        return list
    }

    func optionalStrings(_ body: JSONValue, _ name: String) throws -> [String]? {
        guard let value = body[name] else { return nil }
        guard case .array(let items) = value, items.count <= 100 else {
            throw Problem(.badRequest, "'\(name)' must be an array of at most 100 strings")
        }
        return try items.map { item in
            guard let text = item.stringValue else { throw Problem(.badRequest, "'\(name)' must hold strings") }
            return text
        }
    }

    func number(_ text: String?, name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw Problem(.badRequest, "'\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func withRefusals<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let refusal as CaseOperations.Refusal {
            switch refusal.kind {
            case .invalid: throw Problem(.unprocessableContent, refusal.message)
            case .notFound: throw Problem(.notFound, refusal.message)
            case .conflict: throw Problem(.conflict, refusal.message)
            case .forbidden: throw Problem(.forbidden, refusal.message)
            }
        }
    }

    func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: value.text)))
    }
}

/// Set once the node begins to shut down: long-lived responses (the event stream)
/// end so the listener can close.
final class ShutdownFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
