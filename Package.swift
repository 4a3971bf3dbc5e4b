// swift-tools-version:6.0
import PackageDescription

// Release builds are the only ones that matter for numeric code; the kernels in HotswapCore
// skip exclusivity checks because they work on raw pointers they own.
let package = Package(
    name: "Hotswap",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "hotswap", targets: ["hotswap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // NIOHTTP1's parser errors (malformed framing -> 400); already in the graph through Hummingbird.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        // SHA-256 of adapter files (A1111's hashes); already in the graph through Hummingbird.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "HotswapCore", dependencies: ["CBLAS", "CKernels"],
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // Families/: the standard configs and CLIP vocabulary that single-file checkpoints do not carry.
        .target(name: "HotswapModels", dependencies: ["HotswapCore"], resources: [.copy("Families")]),
        .target(name: "HotswapPipeline", dependencies: ["HotswapCore", "HotswapModels", "HotswapLoRA", "HotswapStore", "CPNG"]),
        .target(name: "HotswapLoRA", dependencies: ["HotswapCore", "HotswapModels", "HotswapStore",
                                                    .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "HotswapStore", dependencies: ["CSQLite"]),
        .target(name: "HotswapServer", dependencies: [
            "HotswapPipeline", "HotswapModels", "HotswapLoRA", "HotswapStore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "hotswap", dependencies: [
            "HotswapPipeline", "HotswapModels", "HotswapCore", "HotswapLoRA", "HotswapStore", "HotswapServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Fixtures and float comparisons for every test target (a plain target: test targets cannot depend on each other).
        .target(name: "HotswapTestSupport", dependencies: ["HotswapPipeline", "CPNG"], path: "Tests/TestSupport"),
        .testTarget(name: "HotswapCoreTests", dependencies: ["HotswapCore", "HotswapTestSupport"]),
        .testTarget(name: "HotswapModelsTests", dependencies: ["HotswapModels", "HotswapCore", "HotswapTestSupport"]),
        .testTarget(name: "HotswapPipelineTests", dependencies: ["HotswapPipeline", "HotswapModels", "HotswapCore", "HotswapTestSupport"]),
        .testTarget(name: "HotswapLoRATests", dependencies: ["HotswapLoRA", "HotswapPipeline", "HotswapModels", "HotswapCore", "HotswapStore",
                                                            "HotswapTestSupport"]),
        .testTarget(name: "HotswapStoreTests", dependencies: ["HotswapStore"]),
        .testTarget(name: "HotswapCLITests", dependencies: ["hotswap", "HotswapPipeline", "HotswapTestSupport"]),
        .testTarget(name: "HotswapServerTests", dependencies: [
            "HotswapServer", "HotswapPipeline", "HotswapStore", "HotswapLoRA", "HotswapModels", "HotswapCore", "HotswapTestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
