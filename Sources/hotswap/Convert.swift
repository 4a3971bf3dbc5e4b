import ArgumentParser
import Foundation
import HotswapModels

/// `hotswap convert FILE --to DIR`: an original-format single file -> a diffusers folder.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an original-format single-file checkpoint (SD1.x/SD2.x/SDXL .safetensors) as a diffusers folder.")

    @Argument(help: "The single-file checkpoint (.safetensors).") var file: String
    @Option(name: .customLong("to"), help: ArgumentHelp("The folder to create (must not exist).", valueName: "dir"))
    var destination: String

    @Option(name: .long, help: ArgumentHelp("epsilon or v_prediction (default: a sidecar's, else SD1 epsilon, SD2 v_prediction).",
                                            valueName: "type"))
    var predictionType: String?

    @Option(name: .customLong("config"), help: ArgumentHelp("A diffusers folder whose configs, scheduler and tokenizer to use.",
                                                            valueName: "dir"))
    var configDirectory: String?

    func validate() throws {
        if let predictionType, !SingleFileOptions.predictionTypes.contains(predictionType) {
            throw ValidationError("--prediction-type \(predictionType): expected one of \(SingleFileOptions.predictionTypes.joined(separator: ", "))")
        }
    }

    func run() throws {
        let url = URL(fileURLWithPath: file)
        let options = SingleFileOptions(predictionType: predictionType, configDirectory: configDirectory.map { URL(fileURLWithPath: $0) })
        let out = URL(fileURLWithPath: destination)
        do {
            let checkpoint = try SingleFileCheckpoint(url: url, options: options)
            // Build the model once: the folder is only written for a checkpoint that loads.
            _ = try StableDiffusionModel(checkpoint: checkpoint)
            try checkpoint.writeDiffusersFolder(to: out)
            print("wrote \(out.path) (\(checkpoint.family.rawValue), \(checkpoint.weightsDType.rawValue), "
                + "prediction_type \(checkpoint.scheduler["prediction_type"]?.brief ?? "epsilon"))")
        } catch {
            throw CLIError("cannot convert \(url.path): \(error)")
        }
    }
}
