import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

/// The UNet keeps each cross-attention block's keys and values between calls with an equal context
/// (every denoising step). Kept results must follow the context's contents and the projections'
/// weights: the same bits as a model that never saw an earlier call.
@Suite("Cross-attention keys and values kept across steps")
struct CrossAttentionCacheTests {
    func values(_ count: Int, seed: Int) -> [Float] { (0..<count).map { Float(($0 * 7919 + seed * 104729) % 2003) / 1001.5 - 1 } }

    @Test func keptResultsFollowContextAndWeights() throws {
        let url = Fixtures.url("models/sd1-tiny")
        let (model, fresh) = (try StableDiffusionModel(directory: url), try StableDiffusionModel(directory: url))
        let sample = Tensor(shape: [1, 4, 8, 8], values: values(256, seed: 1))
        let context = Tensor(shape: [1, 77, 16], values: values(77 * 16, seed: 2))
        func run(_ m: StableDiffusionModel) -> [Float] { m.unet(sample, timestep: 10, context: context).scalars }
        func freshRun() -> [Float] {  // a model that computes everything anew: one call, then forget
            let fresh = try! StableDiffusionModel(directory: url)
            return run(fresh)
        }

        let first = run(model)
        #expect(run(model) == first)  // kept keys and values
        #expect(run(fresh) == first)

        // The caller's context written in place: the contents count, not the tensor.
        context.data[5] += 0.5
        let written = run(model)
        #expect(written != first)
        #expect(written == freshRun())

        // A projection's weight set, as an adapter swap does: computed again.
        let key = try #require(model.unet.linears.keys.sorted().first { $0.hasSuffix("attn2.to_k") })
        let layer = try #require(model.unet.linears[key])
        let scaled = layer.baseWeight.copy()
        for i in 0..<scaled.count { scaled.data[i] *= 1.5 }
        layer.weight = scaled
        let swapped = run(model)
        #expect(swapped != written)
        fresh.unet.linears[key]!.weight = scaled
        #expect(swapped == run(fresh))
        layer.weight = layer.baseWeight
        #expect(run(model) == written)
    }
}
