import ArgumentParser
import Foundation
import HotswapModels
import HotswapPipeline

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "A Stable Diffusion model: a folder in diffusers layout, or an original-format single-file checkpoint (.safetensors, SD1.x/SD2.x/SDXL) (default: the embedded model in Models/)."))
    var model: String?

    @Option(name: .long, help: ArgumentHelp(
        "Single files only: epsilon or v_prediction (default: a FILE.yaml/FILE.json sidecar's, else SD1 epsilon, SD2 v_prediction).",
        valueName: "type"))
    var predictionType: String?

    @Option(name: .customLong("config"), help: ArgumentHelp(
        "Single files only: a diffusers folder whose configs, scheduler and tokenizer to use (as diffusers' from_single_file(config=)).",
        valueName: "dir"))
    var configDirectory: String?

    @Option(name: .customLong("vae-decoder"), help: ArgumentHelp(
        "Decode images with this TAESD (AutoencoderTiny) instead of the model's VAE: a diffusers folder (madebyollin/taesd, taesdxl) or a taesd_decoder.safetensors file. A fast preview: a fraction of the VAE's decode time, softer detail.",
        valueName: "path"))
    var vaeDecoder: String?

    var vaeDecoderURL: URL? { vaeDecoder.map { URL(fileURLWithPath: $0) } }

    var singleFileOptions: SingleFileOptions {
        SingleFileOptions(predictionType: predictionType, configDirectory: configDirectory.map { URL(fileURLWithPath: $0) })
    }

    func validate() throws {
        if let predictionType, !SingleFileOptions.predictionTypes.contains(predictionType) {
            throw ValidationError("--prediction-type \(predictionType): expected one of \(SingleFileOptions.predictionTypes.joined(separator: ", "))")
        }
        if predictionType != nil || configDirectory != nil {
            var isDirectory: ObjCBool = false
            guard let model, FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), !isDirectory.boolValue else {
                throw ValidationError("--prediction-type and --config apply to a single-file --model (a .safetensors checkpoint)")
            }
        }
    }

    /// The folder to load: --model, else $HOTSWAP_MODEL, else the embedded default model.
    func resolveModel() throws -> URL {
        if let model { return URL(fileURLWithPath: model) }
        if let env = ProcessInfo.processInfo.environment["HOTSWAP_MODEL"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        if let embedded = EmbeddedModel.defaultModelDirectory() { return embedded }
        throw CLIError("no --model given and no embedded model found (looked for \(EmbeddedModel.searchedPaths().joined(separator: ", ")))")
    }

    func load() throws -> StableDiffusionModel {
        let url = try resolveModel()
        do {
            return try StableDiffusionModel.load(url, singleFile: singleFileOptions, vaeDecoder: vaeDecoderURL)
        } catch {
            throw CLIError("cannot load model \(url.path): \(error)")
        }
    }
}

/// Where the model shipped in the repository's Models/ folder is found at run time.
enum EmbeddedModel {
    static let folderName = "hotswap-shapes"

    static func searchedPaths() -> [String] {
        var roots: [URL] = []
        // Next to the executable's package (…/.build/release/hotswap -> repository root).
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = executable.deletingLastPathComponent()
        for _ in 0..<4 {
            roots.append(dir)
            dir = dir.deletingLastPathComponent()
        }
        roots.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        return roots.map { $0.appendingPathComponent("Models").appendingPathComponent(folderName).path }
    }

    /// Where adapter names resolve without --adapters-dir: $HOTSWAP_ADAPTERS, else the embedded
    /// model's Models/adapters.
    static func defaultAdaptersDirectory() -> URL? {
        if let env = ProcessInfo.processInfo.environment["HOTSWAP_ADAPTERS"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return searchedPaths()
            .map { URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("adapters") }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    static func defaultModelDirectory() -> URL? {
        searchedPaths().first { FileManager.default.fileExists(atPath: $0 + "/model_index.json") }
            .map { URL(fileURLWithPath: $0) }
    }
}
