// `hotswap convert`: a single-file checkpoint written out as the diffusers folder that
// StableDiffusionPipeline.from_pretrained (and `hotswap --model DIR`) reads.
import Foundation
import HotswapCore

extension SingleFileCheckpoint {
    /// Writes the folder at `destination`, which must not exist yet: everything goes to a temporary
    /// sibling first and is renamed into place at the end, so a failure leaves nothing half-written.
    /// Weights keep the file's dtype (F32, F16 or BF16).
    public func writeDiffusersFolder(to destination: URL) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: destination.path) {
            throw SingleFileError.inconsistent(file: destination.path, reason: "already exists; convert writes a new folder")
        }
        let parent = destination.deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: parent.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelLoadingError.missingFile(parent)
        }
        let staging = parent.appendingPathComponent(".\(destination.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: staging)
        do {
            try write(into: staging)
            try fm.moveItem(at: staging, to: destination)
        } catch {
            try? fm.removeItem(at: staging)
            throw error
        }
    }

    private func write(into folder: URL) throws {
        let fm = FileManager.default
        let dtype: SafeTensorsDType = [.F32, .F16, .BF16].contains(weightsDType) ? weightsDType : .F32
        func json(_ config: JSONConfig, _ path: String) throws {
            let url = folder.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try config.data().write(to: url)
        }
        var schedulerClass = JSONValue.string("PNDMScheduler")
        if case .string? = scheduler["_class_name"] { schedulerClass = scheduler["_class_name"]! }
        let none = JSONValue.array([.null, .null])
        var index = JSONConfig(members: [
            ("_class_name", .string(textEncoder2 == nil ? "StableDiffusionPipeline" : "StableDiffusionXLPipeline")),
            ("_diffusers_version", .string("0.42.1")),
            ("scheduler", .array([.string("diffusers"), schedulerClass])),
            ("text_encoder", .strings(["transformers", "CLIPTextModel"])), ("tokenizer", .strings(["transformers", "CLIPTokenizer"])),
            ("unet", .strings(["diffusers", "UNet2DConditionModel"])), ("vae", .strings(["diffusers", "AutoencoderKL"])),
        ])
        if textEncoder2 == nil {
            index["feature_extractor"] = none
            index["requires_safety_checker"] = .bool(false)
            index["safety_checker"] = none
        } else {
            index["force_zeros_for_empty_prompt"] = .bool(true)
            index["text_encoder_2"] = .strings(["transformers", "CLIPTextModelWithProjection"])
            index["tokenizer_2"] = .strings(["transformers", "CLIPTokenizer"])
        }
        try json(index, "model_index.json")

        var unetConfig = unet.config, vaeConfig = vae.config, textConfig = textEncoder.config
        unetConfig["_class_name"] = .string("UNet2DConditionModel")
        vaeConfig["_class_name"] = .string("AutoencoderKL")
        textConfig["architectures"] = .strings(["CLIPTextModel"])
        textConfig["model_type"] = .string("clip_text_model")
        try json(unetConfig, "unet/config.json")
        try json(vaeConfig, "vae/config.json")
        try json(textConfig, "text_encoder/config.json")
        try json(scheduler, "scheduler/scheduler_config.json")

        let format = ["format": "pt"]
        try SafeTensorsWriter.write(unet.weights, metadata: format,
                                    to: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"), dtype: dtype)
        try SafeTensorsWriter.write(vae.weights, metadata: format,
                                    to: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"), dtype: dtype)
        // position_ids is an integer buffer that transformers rebuilds; it is not a weight.
        try SafeTensorsWriter.write(textEncoder.weights.filter { !$0.key.hasSuffix("position_ids") }, metadata: format,
                                    to: folder.appendingPathComponent("text_encoder/model.safetensors"), dtype: dtype)

        if let second = textEncoder2 {
            var config = second.config
            config["architectures"] = .strings(["CLIPTextModelWithProjection"])
            config["model_type"] = .string("clip_text_model")
            try json(config, "text_encoder_2/config.json")
            try SafeTensorsWriter.write(second.weights, metadata: format,
                                        to: folder.appendingPathComponent("text_encoder_2/model.safetensors"), dtype: dtype)
        }
        for (name, settings, vocabulary) in [("tokenizer", tokenizerDirectory, vocabularyDirectory),
                                             ("tokenizer_2", tokenizer2Directory, vocabulary2Directory)] {
            guard let settings, let vocabularyDirectory = vocabulary else { continue }
            let tokenizer = folder.appendingPathComponent(name)
            try fm.createDirectory(at: tokenizer, withIntermediateDirectories: true)
            for (file, source) in [("vocab.json", vocabularyDirectory), ("merges.txt", vocabularyDirectory),
                                   ("tokenizer_config.json", settings), ("special_tokens_map.json", settings)] {
                let from = source.appendingPathComponent(file)
                guard fm.fileExists(atPath: from.path) else { continue }  // the two config files are optional
                try fm.copyItem(at: from, to: tokenizer.appendingPathComponent(file))
            }
        }
    }
}
