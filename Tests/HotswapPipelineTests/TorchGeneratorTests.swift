import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapPipeline

/// Tests/Fixtures/randn/randn.json, written by Scripts/fixtures/schedulers.py from torch 2.15 on
/// this project's (AVX512) machines: torch.randn draws for several seeds, shapes and successive draws.
private struct RandnFixture: Decodable {
    struct Draw: Decodable { let shape: [Int]; let values: [Float] }
    struct Case: Decodable { let seed: UInt64; let draws: [Draw] }
    struct Large: Decodable {
        let seed: UInt64
        let shape: [Int]
        let head: [Float]
        let tail: [Float]
        let sum: Double
        let sumOfSquares: Double
        let nextValues: [Float]
        enum CodingKeys: String, CodingKey {
            case seed, shape, head, tail, sum
            case sumOfSquares = "sum_of_squares"
            case nextValues = "next_values"
        }
    }
    let cases: [Case]
    let large: [Large]

    static func load() throws -> RandnFixture { try Fixtures.json("randn/randn.json") }
}

/// Largest |a - b| / |b| over elements, with |b| floored at 1e-3 so values near zero compare absolutely.
private func elementwiseError(_ actual: [Float], _ expected: [Float]) -> Float {
    zip(actual, expected).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
}

@Suite("TorchGenerator")
struct TorchGeneratorTests {
    /// Tolerance: draws of 16 or more elements must match bit for bit (that path is plain IEEE
    /// float32 arithmetic, the same on every platform); smaller draws go through libm's double
    /// log1p/sin/cos, so they get rtol 1e-6 per element (on Linux/glibc they are bit-exact too).
    static let rtol: Float = 1e-6

    @Test("randn matches torch.randn for every seed, shape and draw sequence")
    func randnParity() throws {
        var worst: Float = 0, exact = 0, total = 0
        for testCase in try RandnFixture.load().cases {
            var generator = TorchGenerator(seed: testCase.seed)
            for (n, draw) in testCase.draws.enumerated() {
                let tensor = generator.randn(draw.shape)
                #expect(tensor.shape == draw.shape)
                let error = elementwiseError(tensor.scalars, draw.values)
                worst = max(worst, error)
                exact += zip(tensor.scalars, draw.values).filter { $0 == $1 }.count
                total += draw.values.count
                #expect(error <= Self.rtol, "seed \(testCase.seed) draw \(n) shape \(draw.shape): error \(error)")
                if draw.values.count >= 16 {
                    let differing = zip(tensor.scalars, draw.values).filter { $0 != $1 }.count
                    #expect(differing == 0, "seed \(testCase.seed) draw \(n) shape \(draw.shape): \(differing) values not bit-exact")
                }
            }
        }
        print("[TorchGenerator] randn: worst relative error \(worst), \(exact)/\(total) bit-exact")
    }

    @Test("a [2,4,64,64] draw matches torch's head, tail, moments and the state after it")
    func largeDraw() throws {
        for large in try RandnFixture.load().large {
            var generator = TorchGenerator(seed: large.seed)
            let values = generator.randn(large.shape).scalars
            #expect(values.count == 2 * 4 * 64 * 64)
            let differing = zip(values.prefix(64) + values.suffix(64), large.head + large.tail).filter { $0 != $1 }.count
            #expect(differing == 0, "seed \(large.seed): \(differing) of the first/last 64 values not bit-exact")
            let sum = values.reduce(0.0) { $0 + Double($1) }
            let squares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
            #expect(abs(sum - large.sum) <= 1e-6 * large.sumOfSquares, "sum \(sum) vs \(large.sum)")
            #expect(abs(squares - large.sumOfSquares) <= 1e-6 * large.sumOfSquares)
            #expect(elementwiseError(generator.randn([7]).scalars, large.nextValues) <= Self.rtol)
        }
    }

    @Test("a copied generator continues the same stream, including the cached normal")
    func valueSemantics() {
        var original = TorchGenerator(seed: 7)
        _ = original.randn([3])  // leaves a cached Box-Muller sample
        var copy = original
        #expect(original.randn([5]).scalars == copy.randn([5]).scalars)
        #expect(original.randn([40]).scalars == copy.randn([40]).scalars)
    }

    @Test("seeds differing only above bit 32 give the same stream, as in torch")
    func seedTruncation() {
        var low = TorchGenerator(seed: 5)
        var high = TorchGenerator(seed: (1 << 32) + 5)
        #expect(low.randn([20]).scalars == high.randn([20]).scalars)
    }

    @Test("randomSeed stays in the 32 bits torch's mt19937 uses")
    func randomSeed() {
        for _ in 0..<100 { #expect(TorchGenerator.randomSeed() <= UInt64(UInt32.max)) }
    }

    @Test("empty shapes draw nothing and leave the stream unchanged")
    func emptyShape() {
        var a = TorchGenerator(seed: 3), b = TorchGenerator(seed: 3)
        #expect(a.randn([0, 4]).count == 0)
        #expect(a.randn([17]).scalars == b.randn([17]).scalars)
    }

    @Test("the AVX log/sincos emulation stays within 2 ulp of libm on (0, 1] and [0, 2pi)")
    func avxMathAccuracy() {
        var worstLog: Float = 0, worstTrig: Float = 0
        for i in 1...20_000 {
            let u = Float(i) / 20_000
            let log = AVXMathFun.log(u)
            worstLog = max(worstLog, abs(log - Foundation.log(u)) / max(abs(Foundation.log(u)).ulp, Float.leastNormalMagnitude))
            let theta = Float(2 * Double.pi) * (Float(i - 1) / 20_000)
            let (s, c) = AVXMathFun.sincos(theta)
            worstTrig = max(worstTrig, abs(s - sin(theta)) / Float(1).ulp, abs(c - cos(theta)) / Float(1).ulp)
        }
        #expect(worstLog <= 2)
        #expect(worstTrig <= 2)
    }
}
