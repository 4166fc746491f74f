// swift-tools-version: 6.1
// The Gavel load driver: a package of its own, so that its dependencies stay out of the server's build.
//
//     cd loadtest && swift run -c release gavel-load --help
import PackageDescription

let package = Package(
    name: "gavel-loadtest",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gavel-load", targets: ["gavel-load"])
    ],
    dependencies: [
        .package(name: "gavel", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
    ],
    targets: [
        // epoll and the CPU affinity calls, which Swift's Glibc module does not declare.
        .target(name: "CLoadSystem"),
        .target(
            name: "GavelLoadKit",
            dependencies: [
                "CLoadSystem",
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelWire", package: "gavel"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            // As in the server's package: release builds skip Swift's dynamic exclusivity checks, which the closed
            // loop's per-bid bookkeeping would otherwise pay on every access to a connection's state.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "gavel-load",
            dependencies: [
                "GavelLoadKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "GavelLoadKitTests", dependencies: ["GavelLoadKit"]),
    ],
    swiftLanguageModes: [.v6]
)
