// Helpers shared by every test target: the fixture folder and float comparisons.
import Foundation
import Testing

/// Tests/Fixtures, written by Scripts/make_fixtures.py (see its header for how to regenerate).
public enum Fixtures {
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The repository's root folder (Tests/Fixtures/../..).
    public static let repositoryRoot = root.deletingLastPathComponent().deletingLastPathComponent()

    public static func url(_ relativePath: String) -> URL { root.appendingPathComponent(relativePath) }

    public static func json<T: Decodable>(_ relativePath: String, as type: T.Type = T.self) throws -> T {
        // The manifests carry diffusers configs, which may hold a bare -Infinity: JSON5 reads it.
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        return try decoder.decode(T.self, from: Data(contentsOf: url(relativePath)))
    }
}

/// Largest |a - b| relative to the largest |b| (so near-zero elements do not dominate).
public func relativeError(_ actual: [Float], _ expected: [Float]) -> Float {
    precondition(actual.count == expected.count, "\(actual.count) vs \(expected.count) elements")
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in 0..<actual.count {
        // max() drops a NaN operand: a NaN where the reference has a number is an infinite error.
        if actual[i].isNaN != expected[i].isNaN { return .infinity }
        maxDiff = max(maxDiff, abs(actual[i] - expected[i]))
        maxRef = max(maxRef, abs(expected[i]))
    }
    return maxRef > 0 ? maxDiff / maxRef : maxDiff
}

/// Expects `actual` to match `expected` within `rtol` relative to the reference's largest magnitude.
public func expectClose(_ actual: [Float], _ expected: [Float], rtol: Float = 1e-4,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(actual.count == expected.count, "element count", sourceLocation: sourceLocation)
    guard actual.count == expected.count else { return }
    let error = relativeError(actual, expected)
    #expect(error <= rtol, "relative error \(error) > \(rtol)", sourceLocation: sourceLocation)
}
