import ArgumentParser
import Foundation
import HotswapCore
import HotswapLoRA
import HotswapPipeline
import HotswapStore

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
    @Option(name: .customLong("adapter"), help: ArgumentHelp(
        "A LoRA adapter, NAME_OR_PATH[:SCALE] (repeatable; scale default 1). NAME resolves to DIR/NAME.safetensors with --adapters-dir.",
        valueName: "name[:scale]"))
    var adapters: [String] = []
    @Option(help: "Folder of adapter files that --adapter names refer to (default: $HOTSWAP_ADAPTERS, else the embedded Models/adapters).") var adaptersDir: String?
    @Option(help: "fuse: weights = base + scale * B A (default); runtime: y = W x + scale * B (A x), weights untouched.")
    var loraMode: String = LoRAMode.fuse.rawValue
    @Option(help: "kohya files whose alphas differ by layer: diffusers (default, what diffusers computes) or kohya (each layer its own alpha, as A1111).")
    var loraAlpha: String = AlphaConvention.diffusers.rawValue
    @Option(help: "Record the warmup and the request timings in this SQLite file (created if needed).")
    var timingsDb: String?
    @Flag(help: "No progress bar or summary.") var quiet = false

    func run() throws {
        let schedulerName: SchedulerName? = try scheduler.map { name in
            guard let parsed = SchedulerName(rawValue: name) else {
                throw CLIError("unknown scheduler '\(name)'; choose one of \(SchedulerName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return parsed
        }
        guard let mode = LoRAMode(rawValue: loraMode) else {
            throw CLIError("unknown --lora-mode '\(loraMode)'; choose one of \(LoRAMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let alphaConvention = AlphaConvention(rawValue: loraAlpha) else {
            throw CLIError("unknown --lora-alpha '\(loraAlpha)'; choose one of \(AlphaConvention.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let specs: [AdapterSpec]
        do { specs = try adapters.map(AdapterSpec.init(parsing:)) } catch { throw CLIError("\(error)") }
        let request = GenerationRequest(prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidance: guidance,
                                        seed: seed ?? TorchGenerator.randomSeed(), width: width, height: height,
                                        scheduler: schedulerName, clipSkip: clipSkip, adapters: specs)
        // The checks that need no model, before anything is loaded.
        do { try request.validate(limits: .cli) } catch { throw CLIError("\(error)") }
        let outURL = URL(fileURLWithPath: out)
        let outDir = outURL.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: outDir.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("output folder \(outDir.path) does not exist")
        }
        if let adaptersDir {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: adaptersDir, isDirectory: &isDir), isDir.boolValue else {
                throw CLIError("--adapters-dir \(adaptersDir) is not a folder")
            }
        }
        let store: TimingStore?
        do { store = try timingsDb.map { try TimingStore(path: $0) } } catch { throw CLIError("\(error)") }
        defer { store?.close() }

        let total = Stopwatch()
        let modelURL = try modelOptions.resolveModel()
        let options = Renderer.AdapterOptions(
            directory: adaptersDir.map { URL(fileURLWithPath: $0) } ?? EmbeddedModel.defaultAdaptersDirectory(),
            allowsPaths: true, mode: mode, alphaConvention: alphaConvention)
        let renderer: Renderer
        do {
            let (loaded, warmup) = try Renderer.load(modelDirectory: modelURL, singleFile: modelOptions.singleFileOptions,
                                                     vaeDecoder: modelOptions.vaeDecoderURL, adapters: options)
            renderer = loaded
            try store?.recordWarmup(warmup)
        } catch {
            throw CLIError("cannot load model \(modelURL.path): \(error)")
        }
        let loadSeconds = total.elapsedMs / 1000

        var record = RequestRecord(createdAt: Date(), adapters: request.adaptersLabel, steps: steps, width: width,
                                   height: height, scheduler: scheduler, seed: request.seed)
        record.api = "cli"
        func fail(_ code: String, _ message: String) -> CLIError {
            record.fail(code, message)
            record.totalMs = total.elapsedMs
            _ = try? store?.recordRequest(record)
            return CLIError(message)
        }
        let resolved: ResolvedRequest
        do { resolved = try renderer.prepare(request) } catch let error as LoRAError {
            throw fail(error.code, error.description)
        } catch {
            throw fail("invalid_request", "\(error)")
        }
        if !quiet && BLASCoreSelection.outcome.selectedBy == "auto" {
            FileHandle.standardError.write(Data("\(BLASCoreSelection.outcome)\n".utf8))
        }
        let bar = ProgressBar(quiet: quiet)
        let image: RenderedImage
        do {
            image = try renderer.render(resolved, record: &record) { step, total in
                bar.update(step: step, total: total)
                return true
            }
        } catch let error as LoRAError {
            throw fail(error.code, error.description)
        } catch {
            throw fail("generation_failed", "\(error)")
        }
        let write = Stopwatch()
        do {
            try PNGWriter.writeAtomically(image.png, to: outURL)
        } catch {
            throw fail("png_write_failed", "cannot write \(outURL.path): \(error)")
        }
        record.pngMs = (record.pngMs ?? 0) + write.elapsedMs
        record.totalMs = total.elapsedMs
        do { try store?.recordRequest(record) } catch { throw CLIError("\(error)") }
        if !quiet {
            let t = record.generation ?? GenerationTimings()
            let swap = record.swap ?? SwapReport(cache: .none)
            let lora = specs.isEmpty ? "" : String(format: ", lora %@ %.1f ms (%@)", specs.map(\.description).joined(separator: " "),
                                                   swap.totalMs, swap.cache.rawValue)
            let summary = String(format: "wrote %@ (%dx%d, seed %llu, %@, %d steps) load %.2f s%@, text %.0f ms, denoise %.0f ms, decode %.0f ms, png %.0f ms\n",
                                 outURL.path, image.width, image.height, image.seed, resolved.scheduler.rawValue, steps,
                                 loadSeconds, lora, t.textEncodeMs, t.denoiseMs, t.decodeMs, record.pngMs ?? 0)
            FileHandle.standardError.write(Data(summary.utf8))
        }
    }
}
