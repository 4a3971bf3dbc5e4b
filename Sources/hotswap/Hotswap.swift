import ArgumentParser
import Foundation
import HotswapCore

@main
struct Hotswap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hotswap",
        abstract: "Stable Diffusion on the CPU with LoRA adapters hot-swapped per request.",
        subcommands: [Render.self, Bench.self, Adapters.self, Serve.self, Convert.self])

    /// Every failure ends in one line on stderr and a non-zero exit (help and --version excepted).
    static func main() async {
        // Before anything else: OpenBLAS may need this process restarted on the right kernels.
        BLASCoreSelection.applyAtStart()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
            } else {
                let firstLine = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                FileHandle.standardError.write(Data("error: \(firstLine)\n".utf8))
            }
            Foundation.exit(code.rawValue)
        }
    }
}

/// An error whose text is already the one line to show the user.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
