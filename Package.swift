// swift-tools-version: 6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    // Warnings are defects here: CI and every local build fail on them.
    .unsafeFlags(["-warnings-as-errors"]),
]

let package = Package(
    name: "CaseMesh",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "casemesh", targets: ["casemesh"]),
        .library(name: "CaseMeshCRDT", targets: ["CaseMeshCRDT"]),
        .library(name: "CaseMeshModel", targets: ["CaseMeshModel"]),
        .library(name: "CaseMeshStore", targets: ["CaseMeshStore"]),
        .library(name: "CaseMeshSync", targets: ["CaseMeshSync"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(name: "CaseMeshCRDT", swiftSettings: strictSettings),
        .target(
            name: "CaseMeshModel",
            dependencies: ["CaseMeshCRDT"],
            resources: [
                .embedInCode("Resources/case-schema.json"), .embedInCode("Resources/holidays-kr.json"),
                .embedInCode("Resources/deadlines.json"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CaseMeshStore",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            resources: [
                .embedInCode("Resources/0001-initial.sql"), .embedInCode("Resources/0002-consent-and-purge.sql"),
                .embedInCode("Resources/0003-departures-and-deliveries.sql"),
                .embedInCode("Resources/0004-staff-and-intake.sql"), .embedInCode("Resources/0005-case-summaries.sql"),
                .embedInCode("Resources/0006-restore-hold.sql"),
                .embedInCode("Resources/0007-deadlines-in-listing.sql"),
                .embedInCode("Resources/0008-listing-index.sql"),
                .embedInCode("Resources/0009-held-for-newer-schema.sql"),
                .embedInCode("Resources/0010-role-grants.sql"),
            ],
            swiftSettings: strictSettings
        ),
        .target(name: "CaseMeshSync", dependencies: ["CaseMeshCRDT"], swiftSettings: strictSettings),
        // The production sync driver (the session's store work, signer trust), used
        // by the node, the tests' pipes and the simulator alike.
        .target(
            name: "CaseMeshSyncDriver", dependencies: ["CaseMeshCRDT", "CaseMeshStore", "CaseMeshSync"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CaseMeshSimulation",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshSync", "CaseMeshSyncDriver", "CaseMeshNet",
                "CaseMeshOperations",
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CaseMeshNet",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshSync",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CaseMeshNode",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshSync", "CaseMeshSyncDriver", "CaseMeshNet",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strictSettings
        ),
        // What the command line and the HTTP API both do with cases, and how cases
        // are rendered as JSON.
        .target(
            name: "CaseMeshOperations",
            dependencies: ["CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore"],
            swiftSettings: strictSettings
        ),
        // The HTTP API (staff logins, cases, intake, the change feed): depends on the
        // node and the store, never the other way.
        .target(
            name: "CaseMeshHTTP",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshNet", "CaseMeshNode", "CaseMeshOperations",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            resources: [
                .embedInCode("Resources/openapi.json"),
                // The web app: templates, the two catalogues, its one script and style.
                .embedInCode("Resources/web/layout.mustache"), .embedInCode("Resources/web/login.mustache"),
                .embedInCode("Resources/web/cases.mustache"), .embedInCode("Resources/web/case.mustache"),
                .embedInCode("Resources/web/conflicts.mustache"), .embedInCode("Resources/web/share.mustache"),
                .embedInCode("Resources/web/sync.mustache"), .embedInCode("Resources/web/error.mustache"),
                .embedInCode("Resources/web/tasks.mustache"), .embedInCode("Resources/web/matches.mustache"),
                .embedInCode("Resources/web/ko.json"), .embedInCode("Resources/web/en.json"),
                .embedInCode("Resources/web/app.css"), .embedInCode("Resources/web/app.js"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CaseMeshCLI",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshSync", "CaseMeshSyncDriver", "CaseMeshNode",
                "CaseMeshNet", "CaseMeshSimulation",
                "CaseMeshHTTP", "CaseMeshOperations",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(name: "casemesh", dependencies: ["CaseMeshCLI"], swiftSettings: strictSettings),
        .target(
            name: "CaseMeshFuzzTargets",
            dependencies: [
                "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshSync", "CaseMeshNet",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // libFuzzer targets when built by scripts/fuzz (-sanitize=fuzzer -D FUZZING);
        // otherwise a replayer of saved inputs.
        .executableTarget(
            name: "casemesh-fuzz", dependencies: ["CaseMeshFuzzTargets"], swiftSettings: strictSettings),
        .target(
            name: "CaseMeshTestSupport",
            dependencies: ["CaseMeshCRDT", "CaseMeshModel"],
            path: "Tests/CaseMeshTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CaseMeshCRDTTests", dependencies: ["CaseMeshCRDT", "CaseMeshTestSupport"],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "CaseMeshModelTests", dependencies: ["CaseMeshModel"], swiftSettings: strictSettings),
        .testTarget(
            name: "CaseMeshStoreTests",
            dependencies: [
                "CaseMeshStore", "CaseMeshFuzzTargets", "CaseMeshTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CaseMeshSyncTests",
            dependencies: [
                "CaseMeshSync", "CaseMeshSyncDriver", "CaseMeshNode", "CaseMeshStore", "CaseMeshModel",
                "CaseMeshTestSupport",
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CaseMeshSimulationTests",
            dependencies: ["CaseMeshSimulation"],
            // Shrunk failing runs, read from the source tree by the regression test.
            exclude: ["Regressions", "KnownFailures"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "CaseMeshHTTPTests", dependencies: ["CaseMeshHTTP", "CaseMeshCRDT", "CaseMeshModel"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "CaseMeshEndToEndTests",
            dependencies: [
                "casemesh", "CaseMeshCRDT", "CaseMeshModel", "CaseMeshStore", "CaseMeshTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
