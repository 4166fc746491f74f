// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "gavel",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GavelCore", targets: ["GavelCore"]),
        .library(name: "GavelWire", targets: ["GavelWire"]),
        .executable(name: "gavel", targets: ["gavel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
    ],
    targets: [
        // Values and rules: listings, formats, commands, events, errors, state hash. No I/O.
        .target(name: "GavelCore"),
        // The JSON protocol codec shared by the CLI, the server and the load driver.
        .target(name: "GavelWire", dependencies: ["GavelCore"]),
        .executableTarget(
            name: "gavel",
            dependencies: [
                "GavelCore",
                "GavelWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "GavelCoreTests",
            dependencies: [
                "GavelCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(name: "GavelWireTests", dependencies: ["GavelCore", "GavelWire"]),
        .testTarget(name: "GavelCLITests", dependencies: ["GavelCore", "GavelWire"]),
    ],
    swiftLanguageModes: [.v6]
)
