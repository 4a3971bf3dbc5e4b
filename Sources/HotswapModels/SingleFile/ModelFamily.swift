// The Stable Diffusion families a single-file checkpoint can belong to, and what their files cannot
// say: each family's standard configs (SD1.5's and SD2.1's diffusers configs, scheduler and tokenizer
// settings), shipped as JSON in Families/ (copied next to the executable by SwiftPM as a resource).
import Foundation

public enum ModelFamily: String, Sendable, CaseIterable {
    case sd1 = "SD1.x"
    case sd2 = "SD2.x"
    case sdxl = "SDXL"

    /// The folder of this family's defaults in Families/.
    var folderName: String {
        switch self {
        case .sd1: return "sd1"
        case .sd2: return "sd2"
        case .sdxl: return "sdxl"
        }
    }

    /// The component config (`unet`, `vae`, `text_encoder`, `text_encoder_2`, `scheduler_config`) as a JSON object,
    /// to be completed with what the checkpoint's tensors say.
    func defaultConfig(_ component: String) throws -> JSONConfig {
        try JSONConfig(contentsOf: FamilyResources.directory().appendingPathComponent("\(folderName)/\(component).json"))
    }

    /// The folder holding tokenizer_config.json and special_tokens_map.json (pad token: `<|endoftext|>`
    /// for SD1, "!" for SD2).
    func tokenizerDirectory(_ folder: String = "tokenizer") throws -> URL {
        try FamilyResources.directory().appendingPathComponent("\(folderName)/\(folder)")
    }

    /// CLIP's BPE vocabulary (vocab.json, merges.txt), the same for every family.
    static func vocabularyDirectory() throws -> URL {
        try FamilyResources.directory().appendingPathComponent("clip-tokenizer")
    }
}

/// Finds the Families folder without `Bundle.module`, whose accessor stops the process when the
/// resource bundle is missing (a binary copied away from its build folder): that case is an error here.
enum FamilyResources {
    static let bundleName = "Hotswap_HotswapModels.resources"

    static func candidates() -> [URL] {
        var roots = [Bundle.main.bundleURL]
        if let executable = Bundle.main.executableURL { roots.append(executable.resolvingSymlinksInPath().deletingLastPathComponent()) }
        roots.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        var urls: [URL] = []
        if let env = ProcessInfo.processInfo.environment["HOTSWAP_FAMILIES"], !env.isEmpty { urls.append(URL(fileURLWithPath: env)) }
        urls += roots.map { $0.appendingPathComponent(bundleName).appendingPathComponent("Families") }
        // Running from a checkout without a build's resource bundle (e.g. an installed binary): the sources.
        urls.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Families"))
        return urls
    }

    static func directory() throws -> URL {
        let urls = candidates()
        if let found = urls.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("sd1/unet.json").path) }) {
            return found
        }
        throw ModelLoadingError.missingFile(urls[0])
    }
}
