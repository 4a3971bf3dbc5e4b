import Foundation

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct ProgressBar {
    let enabled: Bool
    let start = Date()

    init(quiet: Bool) {
        enabled = !quiet && isatty(STDERR_FILENO) != 0
    }

    func update(step: Int, total: Int) {
        guard enabled else { return }
        let width = 30
        let filled = total > 0 ? width * step / total : width
        let elapsed = Date().timeIntervalSince(start)
        let perStep = step > 0 ? elapsed / Double(step) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r[%@] %d/%d  %.2f s/step", bar, step, total, perStep)
        FileHandle.standardError.write(Data(line.utf8))
        if step == total { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
