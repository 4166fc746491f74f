// swift-tools-version: 6.1
// gavel-projector: keeps a PostgreSQL read model in step with a Gavel server's durable event feed. A package of its
// own, so that PostgreSQL's client stays out of the server's build.
//
//     cd projector && swift run -c release gavel-projector --help
import PackageDescription

let package = Package(
    name: "gavel-projector",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gavel-projector", targets: ["gavel-projector"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // 1.33: COPY FROM STDIN (PostgresConnection.copyFrom), which writes the batches.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
    ],
    targets: [
        .target(
            name: "GavelProjectorKit",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .executableTarget(
            name: "gavel-projector",
            dependencies: [
                "GavelProjectorKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "GavelProjectorKitTests", dependencies: ["GavelProjectorKit"]),
    ],
    swiftLanguageModes: [.v6]
)
