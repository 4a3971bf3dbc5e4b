import Crypto
import Foundation
import HotswapModels

/// A1111's adapter hashes (extensions-builtin/Lora/network.py, `NetworkOnDisk`): the file's
/// `sshs_model_hash` metadata when present, else for a .safetensors file the "addnet" hash
/// (modules/hashes.py `addnet_hash_safetensors`): SHA-256 of everything after the 8-byte length
/// and the JSON header. The infotext's `Lora hashes:` field carries its first 12 hex digits.
public enum LoRAHash {
    public static func a1111Hash(path: String, metadata: [String: String], dataOffset: Int) -> String {
        if let stored = metadata["sshs_model_hash"]?.lowercased(), stored.count >= 12,
           stored.allSatisfy({ $0.isHexDigit }) {
            return stored
        }
        return (try? sha256(path: path, from: dataOffset)) ?? ""
    }

    /// SHA-256 of a file's bytes from `offset` to the end, as lowercase hex.
    public static func sha256(path: String, from offset: Int = 0) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LoRAError.unreadable(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var sha = Crypto.SHA256()
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var position = off_t(offset)
        while true {
            let n = pread(fd, buffer.baseAddress, chunk, position)
            if n < 0 { throw LoRAError.unreadable(file: path, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            position += off_t(n)
        }
        return sha.finalize().map { String(format: "%02x", $0) }.joined()
    }

    public static func shortHash(_ hash: String) -> String { String(hash.prefix(12)) }
}
