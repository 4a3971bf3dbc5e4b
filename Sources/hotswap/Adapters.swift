import ArgumentParser
import Foundation
import HotswapModels
import HotswapLoRA
import HotswapPipeline

struct Adapters: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List and inspect LoRA adapter files.",
        subcommands: [AdaptersList.self, AdaptersInspect.self])
}

/// Shared output of `adapters list` / `inspect`.
enum AdapterPrinting {
    static func json(_ infos: [AdapterInfo]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        // A file's alpha may be NaN or infinite (that is what makes it unusable); still print it.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(infos), as: UTF8.self)
    }

    static func detail(_ info: AdapterInfo, modelName: String?) -> String {
        let scale = info.rank > 0 ? info.alpha / Float(info.rank) : 0
        var lines = [
            "file:        \(info.path)",
            "format:      \(info.format.rawValue)",
            "type:        \(info.type)" + (info.runtimeCapable ? "" : " (applies fused only: --lora-mode runtime refuses it)"),
            "rank:        \(info.rank)" + (info.ranks.count > 1 ? " (ranks \(info.ranks.map(String.init).joined(separator: ", ")))" : ""),
            "alpha:       \(format(info.alpha)) (alpha / rank = \(format(scale)) at scale 1)",
            "targets:     \(info.moduleCount) layers: " + info.targets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
            "parameters:  \(info.parameterCount)",
            "size:        \(info.fileSize) bytes",
            "base:        \(info.base)",
        ]
        if let hash = info.hash { lines.append("hash:        \(hash) (A1111 Lora hashes)") }
        if let fits = info.fitsModel, let modelName {
            lines.append("fits \(modelName): " + (fits ? "yes" : "no: \(info.problem ?? "")"))
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ x: Float) -> String { x == x.rounded() && abs(x) < 1e7 ? String(Int(x)) : "\(x)" }

    /// A manager for checking against a model, or nil when no --model was given.
    static func manager(_ model: String?, directory: URL?) throws -> AdapterManager? {
        guard let model else { return nil }
        let url = URL(fileURLWithPath: model)
        do {
            return AdapterManager(model: try StableDiffusionModel.load(url), adaptersDirectory: directory, cacheLimitBytes: 0)
        } catch {
            throw CLIError("cannot load model \(url.path): \(error)")
        }
    }
}

struct AdaptersList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Adapters in a folder: name, format, rank, alpha, targets, size.")
    @Argument(help: "Folder of .safetensors adapters.") var directory: String
    @Option(help: "Also check each file against this model (a folder or a single-file checkpoint: does it fit?).") var model: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let dir = URL(fileURLWithPath: directory)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("\(dir.path) is not a folder")
        }
        let infos: [AdapterInfo]
        if let manager = try AdapterPrinting.manager(model, directory: dir) {
            infos = try manager.list()
        } else {
            let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "safetensors" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
            infos = files.map { url in
                do {
                    return AdapterInfo(file: try AdapterFile(url: url), name: url.deletingPathExtension().lastPathComponent)
                } catch {
                    return AdapterInfo.failed(url: url, problem: "\(error)")
                }
            }
        }
        if json { print(try AdapterPrinting.json(infos)); return }
        let header = ["NAME", "FORMAT", "TYPE", "RANK", "ALPHA", "LAYERS", "PARAMS", "SIZE", "BASE"] + (model != nil ? ["FITS"] : [])
        var rows = [header]
        for i in infos {
            var row = [i.name, i.format.rawValue, i.type, String(i.rank), AdapterPrinting.format(i.alpha), String(i.moduleCount),
                       String(i.parameterCount), String(i.fileSize), i.base]
            if model != nil { row.append(i.fitsModel == true ? "yes" : "no: \(i.problem ?? "")") }
            if i.problem != nil && model == nil { row[1] = "unreadable: \(i.problem!)" }
            rows.append(row)
        }
        let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            print(row.enumerated().map { c, v in c == row.count - 1 ? v : v.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
    }
}

struct AdaptersInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect",
        abstract: "One adapter file: format, rank, alpha, targets, parameter count, the base it fits, A1111 hash.")
    @Argument(help: "An adapter .safetensors file.") var file: String
    @Option(help: "Also check the file against this model (a folder or a single-file checkpoint: does it fit?).") var model: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let url = URL(fileURLWithPath: file)
        var info: AdapterInfo
        let adapterFile: AdapterFile
        do {
            adapterFile = try AdapterFile(url: url)
            info = AdapterInfo(file: adapterFile, name: url.deletingPathExtension().lastPathComponent)
            info.hash = LoRAHash.shortHash(LoRAHash.a1111Hash(path: url.path, metadata: adapterFile.metadata,
                                                              dataOffset: adapterFile.safetensors.dataOffset))
        } catch {
            throw CLIError("\(error)")
        }
        // Not a usable adapter at all (no LoRA modules, unknown keys, non-finite or overflowing values).
        var unusable: String?
        do { try adapterFile.checkValues() } catch { unusable = "\(error)" }
        var modelName: String?
        if let manager = try AdapterPrinting.manager(model, directory: nil) {
            modelName = manager.model.name
            do {
                _ = try manager.validate(url: url)
                info.fitsModel = true
            } catch {
                info.fitsModel = false
                info.problem = "\(error)"
            }
        }
        print(json ? try AdapterPrinting.json([info]) : AdapterPrinting.detail(info, modelName: modelName))
        // The description above, then a non-zero exit when the file cannot be used.
        if let unusable { throw CLIError("not a usable adapter: \(unusable)") }
        if info.fitsModel == false, let modelName { throw CLIError("does not fit \(modelName): \(info.problem ?? "")") }
    }
}
