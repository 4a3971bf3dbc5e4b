/// A SQLite failure: what was being done, SQLite's result code and message, and the file.
public struct TimingStoreError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let operation: String
    public let code: Int32
    public let message: String

    public var description: String { "timing store \(path): \(operation) failed (\(code)): \(message)" }
}
