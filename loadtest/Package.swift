// swift-tools-version: 6.1
// The Gavel load driver: a package of its own, so that its dependencies stay out of the server's build.
import PackageDescription

let package = Package(
    name: "gavel-loadtest",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "gavel", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        .executableTarget(
            name: "gavel-load",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelWire", package: "gavel"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
