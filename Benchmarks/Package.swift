// swift-tools-version: 6.1
// Benchmarks of Gavel's hot paths, run with package-benchmark:
//
//     cd Benchmarks && swift package benchmark --target RulesEngine   (or WriterLoop, Journal)
//
// A package of its own, so that the benchmark library and its jemalloc/malloc interposer stay out of the
// server's build. It depends on the main package by path.
import PackageDescription

let package = Package(
    name: "gavel-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "gavel", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.0.0"),
    ],
    targets: [
        .executableTarget(
            name: "RulesEngine",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelWire", package: "gavel"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/RulesEngine",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "WriterLoop",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelEngine", package: "gavel"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/WriterLoop",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Journal",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelEngine", package: "gavel"),
                .product(name: "GavelJournal", package: "gavel"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Journal",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Gateway",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelWire", package: "gavel"),
                .product(name: "GavelEngine", package: "gavel"),
                .product(name: "GavelGateway", package: "gavel"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Gateway",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Tokens",
            dependencies: [
                .product(name: "GavelCore", package: "gavel"),
                .product(name: "GavelGateway", package: "gavel"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Tokens",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
