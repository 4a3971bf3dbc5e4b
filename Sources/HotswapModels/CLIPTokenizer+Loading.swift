import Foundation

// Reading a tokenizer folder: vocab.json (hand-written parser for the flat {"token": id} object),
// merges.txt, and the two small config files (JSONSerialization).

/// Token strings (as UTF-8 bytes) <-> ids, stored flat: one byte buffer, an offsets array and an
/// open-addressing hash table. Keys are compared byte for byte (a Swift `String` key would compare
/// by canonical equivalence), and 49k entries cost three arrays instead of 49k heap objects.
struct TokenTable: Sendable {
    private var storage: [UInt8] = []
    private var starts: [Int] = [0]
    private var entryIDs: [Int32] = []
    private var slots: [Int32]  // entry index + 1; 0 = empty
    private var mask: Int

    init(expectedCount: Int = 1024) {
        var capacity = 16
        while capacity < expectedCount * 2 { capacity <<= 1 }
        slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
        storage.reserveCapacity(expectedCount * 8)
        starts.reserveCapacity(expectedCount + 1)
        entryIDs.reserveCapacity(expectedCount)
    }

    var count: Int { entryIDs.count }

    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    private func slot(of key: UnsafeBufferPointer<UInt8>) -> (slot: Int, entry: Int?) {
        var s = Self.hash(key) & mask
        return storage.withUnsafeBufferPointer { bytes in
            while true {
                let e = Int(slots[s]) - 1
                if e < 0 { return (s, nil) }
                let start = starts[e], length = starts[e + 1] - start
                if length == key.count && (length == 0 || memcmp(bytes.baseAddress! + start, key.baseAddress!, length) == 0) {
                    return (s, e)
                }
                s = (s + 1) & mask
            }
        }
    }

    /// Adds `key` with `id`; a key seen before gets the new id (the last duplicate wins, as when
    /// serde_json fills a HashMap).
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, id: Int32) {
        let found = slot(of: key)
        if let entry = found.entry { entryIDs[entry] = id; return }
        storage.append(contentsOf: key)
        starts.append(storage.count)
        entryIDs.append(id)
        slots[found.slot] = Int32(entryIDs.count)
        if entryIDs.count * 2 > slots.count { grow() }
    }

    private mutating func grow() {
        let capacity = slots.count * 2
        slots = [Int32](repeating: 0, count: capacity)
        mask = capacity - 1
        storage.withUnsafeBufferPointer { bytes in
            for e in 0..<entryIDs.count {
                let key = UnsafeBufferPointer(rebasing: bytes[starts[e]..<starts[e + 1]])
                var s = Self.hash(key) & mask
                while slots[s] != 0 { s = (s + 1) & mask }
                slots[s] = Int32(e + 1)
            }
        }
    }

    func id(of key: UnsafeBufferPointer<UInt8>) -> Int32? {
        slot(of: key).entry.map { entryIDs[$0] }
    }

    func id(of key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { id(of: $0) } }

    func id(of key: String) -> Int32? { id(of: Array(key.utf8)) }

    /// The token with `id` (the last one in file order if several share it), via `reverseIndex()`.
    func bytes(ofID id: Int32, in index: [Int32: Int32]) -> ArraySlice<UInt8>? {
        guard let entry = index[id] else { return nil }
        return storage[starts[Int(entry)]..<starts[Int(entry) + 1]]
    }

    /// id -> entry index.
    func reverseIndex() -> [Int32: Int32] {
        var index: [Int32: Int32] = [:]
        index.reserveCapacity(entryIDs.count)
        for (entry, id) in entryIDs.enumerated() { index[id] = Int32(entry) }
        return index
    }
}

extension CLIPTokenizer {
    static func readFile(_ url: URL) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CLIPTokenizerError.missingFile(file: url.path)
        }
        do {
            return [UInt8](try Data(contentsOf: url))
        } catch {
            throw CLIPTokenizerError.unreadableFile(file: url.path, reason: error.localizedDescription)
        }
    }

    /// Parses vocab.json: one JSON object mapping token strings to non-negative integer ids (a
    /// UTF-8 byte order mark allowed), read with the strict JSON parser (JSON.swift).
    static func parseVocab(_ json: [UInt8], file: String) throws -> TokenTable {
        let bom = json.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        let value: JSONValue
        do {
            value = try json.withUnsafeBytes { try JSONParser.parse(UnsafeRawBufferPointer(rebasing: $0[bom...])) }
        } catch {
            throw CLIPTokenizerError.malformedJSON(file: file, reason: "\(error)")
        }
        guard let members = value.objectMembers else {
            throw CLIPTokenizerError.malformedJSON(file: file, reason: "the top level is \(value.kindName), not an object")
        }
        guard !members.isEmpty else { throw CLIPTokenizerError.malformedJSON(file: file, reason: "the vocabulary is empty") }
        var table = TokenTable(expectedCount: max(1024, members.count))
        for (token, idValue) in members {
            guard let id = idValue.nonNegativeInt, id <= Int(Int32.max) else {
                throw CLIPTokenizerError.malformedJSON(file: file, reason: "the id of \(JSONWriter.quote(token)) is \(idValue.brief), not a non-negative integer")
            }
            Array(token.utf8).withUnsafeBufferPointer { table.insert($0, id: Int32(id)) }
        }
        return table
    }

    /// Parses merges.txt the way the tokenizers library's BPE reads it: lines split on "\n" (a
    /// trailing "\r" dropped), lines starting with "#version" skipped, every other line exactly two
    /// tokens separated by one space, both tokens and their concatenation in the vocabulary. The
    /// rank of a merge is its index among the merge lines; a repeated pair keeps its last rank.
    /// Returns (left id << 32 | right id) -> (rank << 32 | merged id).
    static func parseMerges(_ text: [UInt8], file: String, vocab: TokenTable) throws -> [UInt64: UInt64] {
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(text.count / 10)
        var rank: UInt64 = 0
        var joined: [UInt8] = []
        let version = Array("#version".utf8)
        try text.withUnsafeBufferPointer { bytes in
            let n = bytes.count
            var lineStart = 0, lineNumber = 0
            while lineStart < n {
                lineNumber += 1
                var lineEnd = lineStart
                while lineEnd < n && bytes[lineEnd] != 0x0A { lineEnd += 1 }
                let next = lineEnd + 1
                if lineEnd > lineStart && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                defer { lineStart = next }
                let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<lineEnd])
                if line.count >= version.count && line.starts(with: version) { continue }
                var spaceCount = 0, space = 0
                for k in 0..<line.count where line[k] == 0x20 {
                    if spaceCount == 0 { space = k }
                    spaceCount += 1
                }
                guard spaceCount == 1 else {
                    throw CLIPTokenizerError.malformedMerges(
                        file: file, line: lineNumber,
                        reason: "expected two tokens separated by one space, found \(spaceCount + 1) parts")
                }
                let left = UnsafeBufferPointer(rebasing: line[0..<space])
                let right = UnsafeBufferPointer(rebasing: line[(space + 1)...])
                func lookup(_ token: UnsafeBufferPointer<UInt8>) throws -> Int32 {
                    if let id = vocab.id(of: token) { return id }
                    throw CLIPTokenizerError.malformedMerges(
                        file: file, line: lineNumber,
                        reason: "token \"\(String(decoding: token, as: UTF8.self))\" is not in vocab.json")
                }
                let leftID = try lookup(left), rightID = try lookup(right)
                joined.removeAll(keepingCapacity: true)
                joined.append(contentsOf: left)
                joined.append(contentsOf: right)
                let mergedID = try joined.withUnsafeBufferPointer { try lookup($0) }
                let key = UInt64(UInt32(bitPattern: leftID)) << 32 | UInt64(UInt32(bitPattern: rightID))
                merges[key] = rank << 32 | UInt64(UInt32(bitPattern: mergedID))
                rank += 1
            }
        }
        return merges
    }

    /// The object in a JSON config file, or nil when the file does not exist.
    static func readJSONObject(_ url: URL) throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let data = try readFile(url)
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(data), options: [.fragmentsAllowed])
        } catch {
            throw CLIPTokenizerError.malformedJSON(file: url.path, reason: "\(error)")
        }
        guard let dictionary = object as? [String: Any] else {
            throw CLIPTokenizerError.malformedJSON(file: url.path, reason: "the top level is not a JSON object")
        }
        return dictionary
    }
}
