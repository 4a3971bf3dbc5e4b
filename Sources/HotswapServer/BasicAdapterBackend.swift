// An adapter backend without LoRA: it lists adapter files and checks that an upload is a
// well-formed safetensors file, but cannot apply adapters (for a base-model-only server).
import Foundation
import HotswapModels
import HotswapPipeline

public final class BasicAdapterBackend: AdapterBackend, @unchecked Sendable {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    public func attach(model: StableDiffusionModel) throws {}

    public func preload(_ names: [String]) throws -> Double {
        if let name = names.first { throw AdapterValidationError("cannot preload \(name): LoRA support is not built in") }
        return 0
    }

    public func activate(_ adapters: [AdapterRef]) throws -> SwapSummary {
        if let adapter = adapters.first {
            throw AdapterValidationError("cannot apply \(adapter.name): LoRA support is not built in")
        }
        return .nothing
    }

    public func list() throws -> [AdapterDescription] {
        AdapterDirectory.names(in: directory).compactMap { try? describe(named: $0) }
    }

    public func describe(named name: String) throws -> AdapterDescription? {
        guard let url = AdapterName.fileURL(for: name, in: directory), FileManager.default.fileExists(atPath: url.path) else {
            return nil
        }
        return try? validate(at: url, name: name)
    }

    public func validate(at url: URL, name: String) throws -> AdapterDescription {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(url: url)
        } catch {
            throw AdapterValidationError("not a safetensors file: \(error)")
        }
        guard !file.names.isEmpty else { throw AdapterValidationError("the file holds no tensors") }
        return AdapterDescription(name: name, format: "safetensors", rank: nil, alpha: nil, targets: [],
                                  size: Int64(file.fileSize))
    }

    public func loraHashes() -> [LoraHash] { [] }

    public func changed(named name: String) {}
}
