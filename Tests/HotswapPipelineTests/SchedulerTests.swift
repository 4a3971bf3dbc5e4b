import Foundation
import HotswapModels
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapPipeline

/// Tests/Fixtures/schedulers/<config>.json, written by Scripts/fixtures/schedulers.py with diffusers
/// 0.42.1 and torch 2.15: for each scheduler config, every SchedulerName and several step counts,
/// the timesteps, sigmas, init_noise_sigma and the final sample of a full denoising loop (or the
/// error diffusers raised).
private struct SchedulerFixture: Decodable {
    struct Case: Decodable {
        let scheduler: String
        let steps: Int
        let error: String?
        let timesteps: [Float]?
        let initNoiseSigma: Float?
        let sigmas: [Float]?
        let finalSample: [Float]?
        enum CodingKeys: String, CodingKey {
            case scheduler, steps, error, timesteps, sigmas
            case initNoiseSigma = "init_noise_sigma"
            case finalSample = "final_sample"
        }
    }
    let config: SchedulerConfig
    let seed: UInt64
    let shape: [Int]
    let cases: [Case]

    static func load(_ name: String) throws -> SchedulerFixture { try Fixtures.json("schedulers/\(name).json") }
}

/// The fixture script's stand-in for the UNet: model_output = 0.1 * input + cos(t / 100).
private func fakeUNet(_ input: Tensor, timestep: Float) -> Tensor {
    let offset = Float(cos(Double(timestep) / 100))
    return Elementwise.map(input) { Float(0.1) * $0 + offset }
}

/// StableDiffusionPipeline.__call__'s loop, without classifier-free guidance.
private func denoise(_ scheduler: inout any Scheduler, seed: UInt64, shape: [Int]) -> Tensor {
    var generator = TorchGenerator(seed: seed)
    let sigma = scheduler.initNoiseSigma
    var latents = Elementwise.map(generator.randn(shape)) { $0 * sigma }
    for (i, t) in scheduler.timesteps.enumerated() {
        let input = scheduler.scaleModelInput(latents, stepIndex: i)
        let modelOutput = fakeUNet(input, timestep: t)
        latents = scheduler.step(modelOutput: modelOutput, stepIndex: i, sample: latents, generator: &generator)
    }
    return latents
}

/// Largest |a - b| / max(|b|, floor) over elements.
private func elementwiseError(_ actual: [Float], _ expected: [Float], floor: Float = 1e-6) -> Float {
    zip(actual, expected).map { abs($0 - $1) / max(abs($1), floor) }.max() ?? 0
}

@Suite("Schedulers")
struct SchedulerTests {
    static let configs = ["sd15_pndm", "sd2_v_prediction", "linear_trailing", "cosine_zero_snr",
                          "karras_options", "sample_prediction", "v_continuous"]

    /// Tolerances. Integer timesteps must match exactly. alphas_cumprod: rtol per element. sigmas,
    /// init_noise_sigma and fractional timesteps: per element, relative above 1 and absolute below. Final samples: relative to
    /// the largest magnitude (expectClose).
    ///
    /// Why not zero: torch's float32 sqrt/log/exp on CPU come from MKL VML, which is faithfully but
    /// not correctly rounded (about 14% of sqrt results are 1 ulp off the correctly rounded value that
    /// Swift gives), so scalar coefficients can differ by an ulp. For the Stable Diffusion style
    /// configs that stays below 1e-5 (worst seen 9.4e-6: one DDIM step at t = 999, x0 divided by
    /// sqrt(alphas_cumprod) = 0.006). The zero-terminal-SNR config is ill-conditioned in float32
    /// itself: rescale_zero_terminal_snr takes that sqrt of alphas_cumprod and 1 - alphas_cumprod near
    /// t = 0 cancels (an ulp becomes 2e-3 relative on sigma_min, and Karras spacing carries
    /// sigma_min ** (1/7) into every sigma, 3e-4 seen), and sigma_max = 4096 makes every
    /// step cancel terms 4096 times larger than the result, so diffusers on another BLAS/libm
    /// differs from itself by as much.
    struct Tolerance { let alphas: Float; let sigmas: Float; let sample: Float }
    static func tolerance(_ config: String) -> Tolerance {
        config == "cosine_zero_snr"
            ? Tolerance(alphas: 2e-6, sigmas: 1e-3, sample: 5e-4)
            : Tolerance(alphas: 1e-6, sigmas: 1e-6, sample: 1e-5)
    }

    @Test("schedules and full trajectories match diffusers", arguments: configs)
    func parity(configName: String) throws {
        let fixture = try SchedulerFixture.load(configName)
        let tolerance = Self.tolerance(configName)
        var worstSample: Float = 0, worstSigma: Float = 0, checked = 0
        for testCase in fixture.cases {
            let name = try SchedulerName.parse(testCase.scheduler)
            let label = "\(configName) \(testCase.scheduler) \(testCase.steps) steps"
            if let error = testCase.error {
                #expect(throws: SchedulerError.self, "\(label): diffusers raised \(error)") {
                    _ = try makeScheduler(name, config: fixture.config, steps: testCase.steps)
                }
                continue
            }
            var scheduler = try makeScheduler(name, config: fixture.config, steps: testCase.steps)
            let expectedTimesteps = try #require(testCase.timesteps)
            if expectedTimesteps.allSatisfy({ $0 == $0.rounded() }) {
                #expect(scheduler.timesteps == expectedTimesteps, "\(label): timesteps")
            } else {
                // Fractional timesteps (Euler with Karras sigmas or continuous timesteps) go through
                // numpy's/MKL's float32 log, which is not correctly rounded.
                #expect(scheduler.timesteps.count == expectedTimesteps.count, "\(label): timestep count")
                let error = elementwiseError(scheduler.timesteps, expectedTimesteps, floor: 1)
                #expect(error <= tolerance.sigmas, "\(label): fractional timesteps, error \(error)")
            }
            let sigmaError = elementwiseError([scheduler.initNoiseSigma], [testCase.initNoiseSigma ?? .nan], floor: 1)
            #expect(sigmaError <= tolerance.sigmas, "\(label): init_noise_sigma \(scheduler.initNoiseSigma)")
            if let expectedSigmas = testCase.sigmas {
                let sigmas = (scheduler as? EulerDiscreteScheduler)?.sigmas
                    ?? (scheduler as? EulerAncestralDiscreteScheduler)?.sigmas
                    ?? (scheduler as? DPMSolverMultistepScheduler)?.sigmas ?? []
                #expect(sigmas.count == expectedSigmas.count, "\(label): sigma count")
                let error = elementwiseError(sigmas, expectedSigmas, floor: 1)
                worstSigma = max(worstSigma, error)
                #expect(error <= tolerance.sigmas, "\(label): sigmas, error \(error)")
            }
            let sample = denoise(&scheduler, seed: fixture.seed, shape: fixture.shape)
            let expected = try #require(testCase.finalSample)
            worstSample = max(worstSample, relativeError(sample.scalars, expected))
            expectClose(sample.scalars, expected, rtol: tolerance.sample)
            checked += 1
        }
        print("[Schedulers] \(configName): \(checked) trajectories, worst sample error \(worstSample), worst sigma error \(worstSigma)")
    }

    @Test("alphas_cumprod matches torch (linspace with FMA, cumprod in double, zero-SNR rescale)")
    func noiseSchedules() throws {
        let expected: [String: [String: [Float]]] = try Fixtures.json("schedulers/noise_schedules.json")
        for configName in Self.configs {
            let config = try SchedulerFixture.load(configName).config
            for (scheduler, pinsLast) in [("euler", true), ("ddim", false)] {
                let schedule = try NoiseSchedule(config: config, scheduler: scheduler, defaults: (0.0001, 0.02, "linear"),
                                                 numTrainTimesteps: 1000, allowsRescale: true, zeroSnrPinsLast: pinsLast)
                let reference = try #require(expected[configName]?[scheduler])
                let error = elementwiseError(schedule.alphasCumprod, reference, floor: 1e-12)
                #expect(error <= Self.tolerance(configName).alphas, "\(configName) \(scheduler): error \(error)")
                print("[Schedulers] alphas_cumprod \(configName) \(scheduler): worst relative error \(error)")
            }
        }
    }

    @Test("trained_betas gives the same schedule as the beta_schedule it spells out")
    func trainedBetas() throws {
        var config = SchedulerConfig()
        config.betaSchedule = "scaled_linear"
        config.betaStart = 0.00085
        config.betaEnd = 0.012
        let scheduled = try NoiseSchedule(config: config, scheduler: "test", defaults: (0.0001, 0.02, "linear"),
                                          numTrainTimesteps: 1000, allowsRescale: true, zeroSnrPinsLast: true)
        config.trainedBetas = scheduled.betas.map(Double.init)
        config.betaSchedule = "unused because trained_betas wins"
        let trained = try NoiseSchedule(config: config, scheduler: "test", defaults: (0.0001, 0.02, "linear"),
                                        numTrainTimesteps: 1000, allowsRescale: true, zeroSnrPinsLast: true)
        #expect(trained.alphasCumprod == scheduled.alphasCumprod)
        config.trainedBetas = [0.1, 0.2]
        #expect(throws: SchedulerError.self) { _ = try makeScheduler(.ddim, config: config, steps: 10) }
    }

    @Test("a key missing from the file takes each class's own default")
    func classDefaults() throws {
        let config = try SchedulerFixture.load("sd15_pndm").config  // no timestep_spacing key
        #expect(config.timestepSpacing == nil)
        // Euler: "linspace" (0 ... 999), DDIM and PNDM: "leading" with steps_offset 1.
        #expect(try makeScheduler(.euler, config: config, steps: 4).timesteps == [999, 666, 333, 0])
        #expect(try makeScheduler(.ddim, config: config, steps: 4).timesteps == [751, 501, 251, 1])
        #expect(try makeScheduler(.pndm, config: config, steps: 4).timesteps == [751, 501, 501, 251, 1])
        // Euler's init_noise_sigma is the largest sigma for linspace, sqrt(sigma^2 + 1) for leading.
        var leading = config
        leading.timestepSpacing = "leading"
        let linspace = try #require(try makeScheduler(.euler, config: config, steps: 20) as? EulerDiscreteScheduler)
        let leadingEuler = try #require(try makeScheduler(.euler, config: leading, steps: 20) as? EulerDiscreteScheduler)
        #expect(linspace.initNoiseSigma == linspace.sigmas.max())
        let top = try #require(leadingEuler.sigmas.max())
        #expect(leadingEuler.initNoiseSigma == (top * top + 1).squareRoot())
    }

    @Test("scheduler_config.json decoding: snake_case keys, null, -Infinity, unknown keys")
    func configDecoding() throws {
        let json = """
        {"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.21.0",
         "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "trained_betas": null, "lambda_min_clipped": -Infinity, "solver_order": 2,
         "use_karras_sigmas": true, "timestep_spacing": "leading", "steps_offset": 1,
         "some_future_key": [1, 2, 3]}
        """
        let config = try SchedulerConfig.decode(from: Data(json.utf8))
        #expect(config.className == "DPMSolverMultistepScheduler")
        #expect(config.trainedBetas == nil)
        #expect(config.lambdaMinClipped == -.infinity)
        #expect(config.useKarrasSigmas == true)
        #expect(config.timestepSpacing == "leading")
        #expect(try SchedulerName(config: config) == .dpmpp2m)
        let scheduler = try makeScheduler(.dpmpp2m, config: config, steps: 20)
        #expect(scheduler.timesteps.count == 20)
    }

    @Test("names, diffusers classes and A1111 labels")
    func names() throws {
        #expect(SchedulerName.allCases.map(\.rawValue) == ["euler", "euler-a", "ddim", "dpmpp-2m", "dpmpp-2m-karras", "lcm", "pndm"])
        #expect(SchedulerName.allCases.map(\.samplerLabel) == ["Euler", "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "LCM", "PLMS"])
        for name in SchedulerName.allCases {
            let mapped = try SchedulerName(className: name.className)
            #expect(mapped == (name == .dpmpp2mKarras ? .dpmpp2m : name))
            #expect(try SchedulerName.parse(name.rawValue) == name)
        }
        #expect(try SchedulerName(className: "PNDMScheduler") == .pndm)
    }

    @Test("errors name the offending value")
    func errors() throws {
        #expect(throws: SchedulerError.unknownScheduler("heun")) { try SchedulerName.parse("heun") }
        #expect(throws: SchedulerError.unknownClassName("LMSDiscreteScheduler")) {
            try SchedulerName(className: "LMSDiscreteScheduler")
        }
        #expect(throws: SchedulerError.missingClassName) { try SchedulerName(config: SchedulerConfig()) }

        var config = SchedulerConfig()
        config.betaSchedule = "sigmoid"
        #expect(throws: SchedulerError.unsupportedValue(scheduler: "EulerDiscreteScheduler", key: "beta_schedule", value: "sigmoid")) {
            _ = try makeScheduler(.euler, config: config, steps: 20)
        }
        for name in SchedulerName.allCases {
            for steps in [0, 1001] {
                #expect(throws: SchedulerError.self, "\(name) \(steps) steps") {
                    _ = try makeScheduler(name, config: SchedulerConfig(), steps: steps)
                }
            }
            var spacing = SchedulerConfig()
            spacing.timestepSpacing = "uniform"
            if name != .lcm {  // LCMScheduler ignores timestep_spacing
                #expect(throws: SchedulerError.self) { _ = try makeScheduler(name, config: spacing, steps: 10) }
            }
        }
        var thresholding = SchedulerConfig()
        thresholding.thresholding = true
        for name in [SchedulerName.ddim, .dpmpp2m, .lcm] {
            #expect(throws: SchedulerError.unsupportedValue(scheduler: name.className, key: "thresholding", value: "true")) {
                _ = try makeScheduler(name, config: thresholding, steps: 10)
            }
        }
        var sample = SchedulerConfig()
        sample.predictionType = "sample"
        #expect(throws: SchedulerError.self) { _ = try makeScheduler(.eulerAncestral, config: sample, steps: 10) }
        #expect(throws: SchedulerError.self) { _ = try makeScheduler(.pndm, config: sample, steps: 10) }
        #expect(throws: SchedulerError.stepsOutOfRange(scheduler: "LCMScheduler", steps: 51, allowed: 1...50,
                                                      reason: "original_inference_steps is 50")) {
            _ = try makeScheduler(.lcm, config: SchedulerConfig(), steps: 51)
        }
        var sde = SchedulerConfig()
        sde.algorithmType = "dpmsolver"
        #expect(throws: SchedulerError.self) { _ = try makeScheduler(.dpmpp2m, config: sde, steps: 10) }

        let message = SchedulerError.unsupportedValue(scheduler: "DDIMScheduler", key: "thresholding", value: "true").description
        #expect(message.contains("thresholding") && message.contains("true") && message.contains("DDIMScheduler"))
        #expect(SchedulerError.unknownScheduler("heun").description.contains("euler-a"))
    }

    @Test("StableDiffusionPipeline's config rewrite: steps_offset 1, clip_sample false")
    func pipelineAdjustment() {
        var config = SchedulerConfig()
        // The folder's own DDIM without those keys: class defaults (0, true) are rewritten.
        let own = config.stableDiffusionPipelineAdjusted(ownScheduler: .ddim)
        #expect(own.stepsOffset == 1 && own.clipSample == false)
        // Another class built from pipe.scheduler.config: defaulted keys are dropped, nothing to rewrite.
        let other = config.stableDiffusionPipelineAdjusted(ownScheduler: nil)
        #expect(other.stepsOffset == nil && other.clipSample == nil)
        config.stepsOffset = 0
        config.clipSample = true
        let written = config.stableDiffusionPipelineAdjusted(ownScheduler: nil)
        #expect(written.stepsOffset == 1 && written.clipSample == false)
    }
}
