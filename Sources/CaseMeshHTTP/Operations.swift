import CaseMeshCRDT
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// The operator's endpoints: `/health`, `/health/live`, `/health/ready` and
/// `/metrics`, without login. They carry counts, replica IDs and dates, never
/// personal data; still, `/health` and `/metrics` are served on the API listener
/// only when it is a loopback one, and always on `--admin` (a monitoring network).
struct OperatorEndpoints: Sendable {
    let store: CaseStore
    let node: Node?
    let registry: PrometheusCollectorRegistry?
    /// Whether `/health` and `/metrics` are served here (not only the probes).
    let detailed: Bool

    static let routes: [(method: String, path: String)] = [
        ("GET", "/health"), ("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/metrics"),
    ]

    func register(on router: Router<APIRequestContext>) {
        router.get("health/live") { _, _ in json(.ok, .object(["status": .string("ok")])) }
        router.get("health/ready") { _, _ in
            // Ready: the store answers and, with a node, its certificates are loaded
            // (a node that could not load them never starts).
            do {
                _ = try store.logEnd()
                return json(.ok, .object(["status": .string("ok")]))
            } catch {
                return json(
                    .serviceUnavailable,
                    .object(["status": .string("failing"), "reason": .string("the store does not answer")]))
            }
        }
        guard detailed else { return }
        router.get("health") { request, _ in try health(request) }
        router.get("metrics") { _, _ in try metrics() }
    }

    /// The thresholds of `/health`, from its query (Corrosion's `/v1/health` style).
    struct Thresholds {
        var syncAgeSeconds = 600
        var certificateDays = 30
        /// CRLs live 30 days (`casemesh-ca crl`), so warning 30 days ahead would warn
        /// always: a CRL is flagged a week before it runs out.
        var revocationListDays = 7
        var quarantine = 100
        var pending = 1000
        /// Changes held for a newer case schema: a few during a consortium's rolling
        /// upgrade; many mean this node was left behind.
        var held = 1000
    }

    func thresholds(_ request: Request) throws -> Thresholds {
        let query = request.uri.queryParameters
        let known: Set<String> = ["sync_age", "cert_days", "crl_days", "quarantine", "pending", "held"]
        if let unknown = query.map({ String($0.key) }).first(where: { !known.contains($0) }) {
            throw Problem(.badRequest, "unknown query parameter '\(unknown.prefix(40))'")
        }
        func value(_ name: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let text = query.get(name) else { return fallback }
            guard let number = Int(text), range.contains(number) else {
                throw Problem(
                    .badRequest, "'\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return number
        }
        var thresholds = Thresholds()
        thresholds.syncAgeSeconds = try value("sync_age", thresholds.syncAgeSeconds, 1...31_536_000)
        thresholds.certificateDays = try value("cert_days", thresholds.certificateDays, 0...3650)
        thresholds.revocationListDays = try value("crl_days", thresholds.revocationListDays, 0...3650)
        thresholds.quarantine = try value("quarantine", thresholds.quarantine, 0...100_000_000)
        thresholds.pending = try value("pending", thresholds.pending, 0...100_000_000)
        thresholds.held = try value("held", thresholds.held, 0...100_000_000)
        return thresholds
    }

    func health(_ request: Request) throws -> Response {
        let limits = try thresholds(request)
        let nowMillis = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        var checks: [String: JSONValue] = [:]
        var failing: [String] = []
        func check(_ name: String, _ ok: Bool, _ detail: [String: JSONValue]) {
            checks[name] = .object(detail.merging(["ok": .bool(ok)]) { _, new in new })
            if !ok { failing.append(name) }
        }
        let writable = store.isWritable()
        check("store", writable, ["writable": .bool(writable)])
        let figures = try store.figures()
        // A replica restored from a backup makes no change until it has synced again.
        let held = try store.restoreHold()
        check("restore", held.isEmpty, ["waitingFor": .array(held.map { .string($0.rawValue) })])
        check(
            "quarantine", figures.quarantined <= limits.quarantine,
            ["count": .number(Int64(figures.quarantined)), "max": .number(Int64(limits.quarantine))])
        check(
            "pending", figures.pending <= limits.pending,
            ["count": .number(Int64(figures.pending)), "max": .number(Int64(limits.pending))])
        check(
            "schema", figures.heldForNewerSchema <= limits.held,
            [
                "version": .number(Int64(store.schema.version)), "held": .number(Int64(figures.heldForNewerSchema)),
                "max": .number(Int64(limits.held)),
            ])
        if let node {
            let states = Dictionary(try store.peerStates().map { ($0.peer, $0) }, uniquingKeysWith: { a, _ in a })
            var peers: [JSONValue] = []
            var allSynced = true
            for peer in node.peersToSync() {
                let state = states[peer.replica]
                let age = state?.lastSuccessAtMillis.map { nowMillis >= $0 ? Int64((nowMillis - $0) / 1000) : 0 }
                let ok = age.map { $0 <= Int64(limits.syncAgeSeconds) } ?? false
                allSynced = allSynced && ok
                peers.append(
                    .object([
                        "peer": .string(peer.replica.rawValue), "ok": .bool(ok),
                        "lastSuccessAgeSeconds": age.map(JSONValue.number) ?? .null,
                        "lastError": state?.lastError.map(JSONValue.string) ?? .null,
                    ]))
            }
            checks["peers"] = .object([
                "ok": .bool(allSynced), "maxAgeSeconds": .number(Int64(limits.syncAgeSeconds)), "peers": .array(peers),
            ])
            if !allSynced { failing.append("peers") }
            let minimum = Double(limits.certificateDays) * 86_400
            let certificateLeft = node.certificateNotAfter.timeIntervalSinceNow
            check(
                "certificate", certificateLeft > minimum,
                [
                    "expiresAt": .string(ISO8601DateFormatter().string(from: node.certificateNotAfter)),
                    "daysLeft": .number(Int64(certificateLeft / 86_400)),
                    "minimumDays": .number(Int64(limits.certificateDays)),
                ])
            if node.configuration.revocationList != nil {
                let nextUpdate = node.revocationListNextUpdate()
                let left = nextUpdate?.timeIntervalSinceNow
                check(
                    "crl", left.map { $0 > Double(limits.revocationListDays) * 86_400 } ?? false,
                    [
                        "nextUpdate": nextUpdate.map { .string(ISO8601DateFormatter().string(from: $0)) } ?? .null,
                        "daysLeft": left.map { .number(Int64($0 / 86_400)) } ?? .null,
                        "minimumDays": .number(Int64(limits.revocationListDays)),
                    ])
            }
        }
        let body: JSONValue = .object([
            "status": .string(failing.isEmpty ? "ok" : "failing"),
            "failing": .array(failing.sorted().map(JSONValue.string)),
            "checks": .object(checks),
        ])
        return json(failing.isEmpty ? .ok : .serviceUnavailable, body)
    }

    /// The Prometheus text: the counters the node records as it syncs and serves,
    /// and the store's figures and credentials' expiry read now.
    func metrics() throws -> Response {
        guard let registry else { throw Problem(.notFound, "metrics are not collected by this process") }
        let figures = try store.figures()
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let overdue = try store.caseSummaries(matching: CaseListFilter(deadlineBefore: now), limit: 0, offset: 0).total
        let soon =
            try store.caseSummaries(
                matching: CaseListFilter(deadlineBefore: CaseWorkflow.dueSoonBound(now: now, workingDays: 3)), limit: 0,
                offset: 0
            ).total - overdue
        for (name, help, value) in [
            ("casemesh_deadlines_overdue", "Cases whose next statutory deadline has passed", Double(overdue)),
            (
                "casemesh_deadlines_due_soon", "Cases whose next statutory deadline is within 3 working days",
                Double(max(0, soon))
            ),
            ("casemesh_cases_held", "Cases held and listed on this node", Double(figures.casesHeld)),
            ("casemesh_open_conflicts", "Open conflicts over every case", Double(figures.openConflicts)),
            ("casemesh_quarantined_changes", "Quarantined changes not yet resolved", Double(figures.quarantined)),
            ("casemesh_pending_changes", "Changes waiting for their causal dependencies", Double(figures.pending)),
            (
                "casemesh_held_newer_schema_changes", "Changes with operations held for a newer case schema",
                Double(figures.heldForNewerSchema)
            ),
            ("casemesh_case_schema_version", "The case schema version this node follows", Double(store.schema.version)),
            ("casemesh_purged_cases", "Cases purged from this node", Double(figures.purged)),
            ("casemesh_log_changes", "Changes in this node's change log", Double(figures.logLength)),
            ("casemesh_store_bytes", "Size of the store, its write-ahead log included", Double(figures.storeBytes)),
        ] {
            gauge(registry, name, help).set(value)
        }
        if let node {
            gauge(registry, "casemesh_certificate_expiry_seconds", "Seconds until this node's certificate expires").set(
                node.certificateNotAfter.timeIntervalSinceNow)
            if let nextUpdate = node.revocationListNextUpdate() {
                gauge(registry, "casemesh_crl_expiry_seconds", "Seconds until the CRL in use must be replaced").set(
                    nextUpdate.timeIntervalSinceNow)
            }
            let nowMillis = Date().timeIntervalSince1970 * 1000
            for state in try store.peerStates() {
                guard let last = state.lastSuccessAtMillis else { continue }
                gauge(
                    registry, "casemesh_peer_last_sync_age_seconds",
                    "Seconds since the last successful sync with a peer",
                    labels: [("peer", state.peer.rawValue)]
                ).set(max(0, (nowMillis - Double(last)) / 1000))
            }
        }
        var text = registry.emitToBuffer()
        if let traffic = node?.transport.traffic.totals {
            // The transport counts every frame's bytes itself: written out here as a
            // counter rather than copied into the registry on every frame.
            text += Array(
                """
                # HELP casemesh_wire_bytes_total Bytes of sync frames sent and received over mutual TLS
                # TYPE casemesh_wire_bytes_total counter
                casemesh_wire_bytes_total{direction="sent"} \(traffic.sent)
                casemesh_wire_bytes_total{direction="received"} \(traffic.received)

                """.utf8)
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    func gauge(
        _ registry: PrometheusCollectorRegistry, _ name: String, _ help: String, labels: [(String, String)] = []
    ) -> Prometheus.Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func json(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: value.text)))
    }
}
