import ArgumentParser
import Foundation
import HotswapPipeline

struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render one image from a prompt and write it as PNG (with A1111 infotext).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The prompt.") var prompt: String
    @Option(help: "What the image should not show.") var negativePrompt: String?
    @Option(help: "Denoising steps (1...1000).") var steps: Int = 50
    @Option(help: "Classifier-free guidance scale; <= 1 skips the unconditional pass.") var guidance: Float = 7.5
    @Option(help: "Seed (default: random; printed and written into the PNG).") var seed: UInt64?
    @Option(help: "Width in pixels, a multiple of 8 (default: the model's native size).") var width: Int?
    @Option(help: "Height in pixels, a multiple of 8 (default: the model's native size).") var height: Int?
    @Option(help: "Scheduler: \(SchedulerName.allCases.map(\.rawValue).joined(separator: ", ")) (default: the model's own).")
    var scheduler: String?
    @Option(help: "Skip the last N text-encoder layers, as diffusers' clip_skip (A1111's 'Clip skip' is N + 1).")
    var clipSkip: Int?
    @Option(help: "Output PNG file.") var out: String = "output.png"
    @Flag(help: "No progress bar or summary.") var quiet = false

    func run() throws {
        let schedulerName: SchedulerName? = try scheduler.map { name in
            guard let parsed = SchedulerName(rawValue: name) else {
                throw CLIError("unknown scheduler '\(name)'; choose one of \(SchedulerName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return parsed
        }
        guard GenerationRequest.stepRange.contains(steps) else { throw CLIError(GenerationError.stepsOutOfRange(steps).description) }
        for (field, value) in [("width", width), ("height", height)] {
            if let value, value <= 0 || value % 8 != 0 {
                throw CLIError(GenerationError.invalidSize(field: field, value: value, multiple: 8).description)
            }
        }
        let outURL = URL(fileURLWithPath: out)
        let outDir = outURL.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: outDir.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("output folder \(outDir.path) does not exist")
        }

        let loadStart = Date()
        let model = try modelOptions.load()
        let pipeline = StableDiffusionPipeline(model: model)
        let request = GenerationRequest(prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidance: guidance,
                                        seed: seed ?? TorchGenerator.randomSeed(), width: width, height: height,
                                        scheduler: schedulerName, clipSkip: clipSkip)
        let resolved: (width: Int, height: Int, scheduler: SchedulerName)
        do { resolved = try pipeline.resolve(request) } catch { throw CLIError("\(error)") }
        let loadSeconds = Date().timeIntervalSince(loadStart)

        let bar = ProgressBar(quiet: quiet)
        let image = try pipeline.generate(request) { step, total in
            bar.update(step: step, total: total)
            return true
        }
        let pngStart = Date()
        let infotext = Infotext(prompt: prompt, negativePrompt: negativePrompt ?? "", steps: steps,
                                sampler: resolved.scheduler.samplerLabel,
                                cfgScale: Double(guidance), seed: image.seed, width: image.width, height: image.height,
                                modelName: model.name, clipSkip: clipSkip.map { $0 + 1 })
        do {
            try PNGWriter.write(rgb: image.rgb, width: image.width, height: image.height,
                                text: [(key: "parameters", value: infotext.text)], to: outURL)
        } catch {
            throw CLIError("cannot write \(outURL.path): \(error)")
        }
        let pngMs = Date().timeIntervalSince(pngStart) * 1000
        if !quiet {
            let t = image.timings
            let summary = String(format: "wrote %@ (%dx%d, seed %llu, %@, %d steps) load %.2f s, text %.0f ms, denoise %.0f ms, decode %.0f ms, png %.0f ms\n",
                                 outURL.path, image.width, image.height, image.seed, resolved.scheduler.rawValue, steps,
                                 loadSeconds, t.textEncodeMs, t.denoiseMs, t.decodeMs, pngMs)
            FileHandle.standardError.write(Data(summary.utf8))
        }
    }
}
