// swift-tools-version: 6.1
import PackageDescription

/// Release builds of the engine, the writer loop, the codec, the journal and the gateway skip Swift's dynamic
/// exclusivity checks (about 6 % of the writer's time, and a few per cent of the event loops' and the journal
/// thread's): the state they check has exactly one owner at a time (the writer thread or the single caller of
/// `Engine.apply`, the journal thread, a connection's event loop), which the debug build the tests run checks with
/// `Confinement` and `assertInEventLoop`, and the debug build keeps the exclusivity checks on as well, which catches
/// an overlapping access within one thread. The lock-free parts use `Atomic` and `Mutex`, which these checks never
/// covered.
let singleOwnerSettings: [SwiftSetting] = [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "gavel",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GavelCore", targets: ["GavelCore"]),
        .library(name: "GavelWire", targets: ["GavelWire"]),
        .library(name: "GavelEngine", targets: ["GavelEngine"]),
        .library(name: "GavelJournal", targets: ["GavelJournal"]),
        .library(name: "GavelGateway", targets: ["GavelGateway"]),
        .executable(name: "gavel", targets: ["gavel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.0.0"),
    ],
    targets: [
        // Values and rules: listings, formats, commands, events, errors, state hash. No I/O.
        .target(name: "GavelCore", dependencies: ["CGavelShims"], swiftSettings: singleOwnerSettings),
        // The JSON protocol codec shared by the CLI, the server and the load driver.
        .target(name: "GavelWire", dependencies: ["GavelCore"], swiftSettings: singleOwnerSettings),
        // The single-writer loop: lock-free per-listing queues, the ready list, timers, batches and release.
        .target(
            name: "GavelEngine",
            dependencies: [
                "GavelCore", "CGavelShims",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: singleOwnerSettings
        ),
        // liblz4 (frame format) from the system: apt-get install liblz4-dev.
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // CRC-32C, fdatasync and the thread calls Glibc's module does not carry.
        .target(name: "CGavelShims"),
        // The durable sink: record codec, LZ4 segments, group commit, snapshots, recovery, verification.
        .target(
            name: "GavelJournal",
            dependencies: [
                "GavelCore", "GavelEngine", "CLZ4", "CGavelShims",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: singleOwnerSettings
        ),
        // The WebSocket gateway (SwiftNIO, no framework): sessions, auth, limits, fan-out, admin HTTP and metrics.
        .target(
            name: "GavelGateway",
            dependencies: [
                "GavelCore", "GavelWire", "GavelEngine", "GavelJournal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Page")],
            swiftSettings: singleOwnerSettings
        ),
        .executableTarget(
            name: "gavel",
            dependencies: [
                "GavelCore",
                "GavelWire",
                "GavelEngine",
                "GavelJournal",
                "GavelGateway",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),
        .testTarget(
            name: "GavelCoreTests",
            dependencies: [
                "GavelCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(name: "GavelWireTests", dependencies: ["GavelCore", "GavelWire"]),
        .testTarget(name: "GavelEngineTests", dependencies: ["GavelCore", "GavelEngine"]),
        .testTarget(name: "GavelCLITests", dependencies: ["GavelCore", "GavelWire"]),
        // Counts one thread's heap allocations, for the tests that assert allocation counts (glibc only); linked into
        // the test bundle, never into gavel.
        .target(name: "CAllocationCounter", path: "Tests/CAllocationCounter"),
        .testTarget(
            name: "GavelGatewayTests",
            dependencies: [
                "GavelCore", "GavelWire", "GavelEngine", "GavelJournal", "GavelGateway", "CAllocationCounter",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "GavelJournalTests", dependencies: ["GavelCore", "GavelEngine", "GavelJournal", "GavelWire"]),
    ],
    swiftLanguageModes: [.v6]
)
