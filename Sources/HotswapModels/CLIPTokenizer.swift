import Foundation

/// Why a tokenizer folder could not be loaded. Every case names the file it is about.
public enum CLIPTokenizerError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// A required file (vocab.json, merges.txt) is not there.
    case missingFile(file: String)
    case unreadableFile(file: String, reason: String)
    /// Not JSON, or not the shape expected (vocab.json: an object of token -> non-negative integer).
    case malformedJSON(file: String, reason: String)
    /// A merges.txt line that is not "LEFT RIGHT", or names a token missing from vocab.json.
    case malformedMerges(file: String, line: Int, reason: String)
    /// A special token (bos/eos/unk/pad/...) or added token whose text is not in vocab.json.
    case tokenNotInVocabulary(file: String, key: String, token: String)
    /// A setting with an unusable value (pad token missing, model_max_length not an integer, ...).
    case invalidSetting(file: String, key: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let file): return "\(file): file not found"
        case .unreadableFile(let file, let reason): return "\(file): cannot read: \(reason)"
        case .malformedJSON(let file, let reason): return "\(file): malformed JSON: \(reason)"
        case .malformedMerges(let file, let line, let reason): return "\(file):\(line): \(reason)"
        case .tokenNotInVocabulary(let file, let key, let token):
            return "\(file): \(key) \"\(token)\" is not in vocab.json"
        case .invalidSetting(let file, let key, let reason): return "\(file): \(key): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

/// CLIP's byte-level BPE tokenizer, giving the ids transformers 5's `CLIPTokenizer` (backed by the
/// `tokenizers` library) gives for the same folder:
///
/// - `encode(text)` == `tokenizer.encode(text, add_special_tokens=False)`
/// - `tokenize(text)` == `tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
///   truncation=True).input_ids`, the call diffusers makes for prompts and negative prompts.
///
/// The folder is the old-style one the Hub's SD pipelines ship: vocab.json, merges.txt and,
/// optionally, tokenizer_config.json / special_tokens_map.json (bos/eos/unk/pad tokens as strings
/// or AddedToken dicts, model_max_length, added_tokens_decoder). As in transformers, special
/// tokens are split out of the prompt text before normalization: for SD2.x, whose pad token is
/// "!", every "!" in a prompt becomes the pad id 0, and a special token whose AddedToken dict says
/// normalized=true also matches case-insensitively ("<|ENDOFTEXT|>").
///
/// Thread-safe: the only mutable state is a locked cache of BPE results.
public struct CLIPTokenizer: Sendable {
    /// model_max_length (77 for every SD text encoder): the length of `tokenize`'s result.
    public let maxLength: Int
    public let bosTokenID: Int
    public let eosTokenID: Int
    public let padTokenID: Int
    /// The id BPE uses for a byte missing from the vocabulary (never needed with CLIP's vocabulary).
    public let unkTokenID: Int?

    static let maxTokenID = 1 << 24
    static let defaultMaxLength = 77

    let vocab: TokenTable
    /// (left id << 32 | right id) -> (rank << 32 | merged id)
    let merges: [UInt64: UInt64]
    /// Id of each byte's byte-level character, and of that character + "</w>"; -1 if absent.
    let byteIDs: [Int32]
    let byteEndIDs: [Int32]
    let rawAddedTokens: AddedTokenMatcher
    let normalizedAddedTokens: AddedTokenMatcher
    /// id -> vocab entry, and the text of added tokens (which take precedence), for `decode`.
    let vocabIndex: [Int32: Int32]
    let addedTokenTexts: [Int32: [UInt8]]
    let cache = BPECache()

    /// Loads vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json from
    /// `directory` (the config files may be absent: transformers' CLIPTokenizer defaults apply,
    /// bos `<|startoftext|>`, eos/unk/pad `<|endoftext|>`, and model_max_length defaults to 77).
    /// `vocabularyDirectory`: where vocab.json and merges.txt are, when not in `directory` (the
    /// single-file families share one CLIP vocabulary and differ only in their special tokens).
    public init(directory: URL, vocabularyDirectory: URL? = nil) throws {
        let vocabURL = (vocabularyDirectory ?? directory).appendingPathComponent("vocab.json")
        let mergesURL = (vocabularyDirectory ?? directory).appendingPathComponent("merges.txt")
        let vocab = try Self.parseVocab(Self.readFile(vocabURL), file: vocabURL.path)
        let merges = try Self.parseMerges(Self.readFile(mergesURL), file: mergesURL.path, vocab: vocab)
        let config = try SpecialTokenConfig(directory: directory)

        var byteIDs = [Int32](repeating: -1, count: 256), byteEndIDs = byteIDs
        for byte in 0..<256 {
            let character = Array(String(Self.byteToUnicode[byte]).utf8)
            byteIDs[byte] = vocab.id(of: character) ?? -1
            byteEndIDs[byte] = vocab.id(of: character + Array("</w>".utf8)) ?? -1
        }

        // Added tokens: ids, then one matcher for the raw text and one for the normalized text.
        var addedTokenTexts: [Int32: [UInt8]] = [:]
        var raw = AddedTokenMatcher(), normalized = AddedTokenMatcher()
        for entry in config.addedTokens {
            let id: Int32
            if let vocabID = vocab.id(of: entry.token.content) {
                id = vocabID
            } else if let declared = entry.declaredID {
                id = declared
            } else {
                throw CLIPTokenizerError.tokenNotInVocabulary(file: entry.file, key: entry.key, token: entry.token.content)
            }
            addedTokenTexts[id] = Array(entry.token.content.utf8)
            if entry.token.normalized {
                let pattern = Self.normalize(entry.token.content.unicodeScalars)
                if !pattern.isEmpty {
                    normalized.patterns.append(.init(scalars: pattern, id: id, singleWord: entry.token.singleWord))
                }
            } else {
                raw.patterns.append(.init(scalars: Array(entry.token.content.unicodeScalars), id: id,
                                          singleWord: entry.token.singleWord))
            }
        }

        func resolve(_ named: SpecialTokenConfig.Named?, key: String) throws -> Int {
            guard let named else {
                throw CLIPTokenizerError.invalidSetting(file: config.configFile, key: key, reason: "not set")
            }
            if let id = vocab.id(of: named.content) { return Int(id) }
            if let added = config.addedTokens.first(where: { $0.token.content == named.content }), let id = added.declaredID {
                return Int(id)
            }
            throw CLIPTokenizerError.tokenNotInVocabulary(file: named.file, key: key, token: named.content)
        }
        bosTokenID = try resolve(config.bos, key: "bos_token")
        eosTokenID = try resolve(config.eos, key: "eos_token")
        padTokenID = try resolve(config.pad, key: "pad_token")
        unkTokenID = config.unk.flatMap { vocab.id(of: $0.content) }.map(Int.init)
        maxLength = config.maxLength

        self.vocab = vocab
        self.merges = merges
        self.byteIDs = byteIDs
        self.byteEndIDs = byteEndIDs
        self.rawAddedTokens = raw
        self.normalizedAddedTokens = normalized
        self.vocabIndex = vocab.reverseIndex()
        self.addedTokenTexts = addedTokenTexts
    }

    /// The BPE ids of `text`, without BOS/EOS, untruncated.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int32] = []
        encode(text, into: &ids)
        return ids.map(Int.init)
    }

    /// BOS, the ids of `text` cut so that BOS + ids + EOS fit `maxLength`, EOS, then the pad id up
    /// to `maxLength`: diffusers' `tokenizer(text, padding="max_length",
    /// max_length=tokenizer.model_max_length, truncation=True).input_ids`.
    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int32] = []
        encode(text, into: &ids)
        var out = [Int]()
        out.reserveCapacity(maxLength)
        out.append(bosTokenID)
        for id in ids.prefix(maxLength - 2) { out.append(Int(id)) }
        out.append(eosTokenID)
        while out.count < maxLength { out.append(padTokenID) }
        return out
    }

    /// Length of the untruncated, unpadded ids with BOS and EOS (what diffusers gets from
    /// `tokenizer(text, padding="longest").input_ids`): the prompt was truncated when this is over
    /// `maxLength`.
    public func untruncatedCount(_ text: String) -> Int {
        var ids: [Int32] = []
        encode(text, into: &ids)
        return ids.count + 2
    }

    /// The part of `text` that `tokenize` drops, as diffusers logs it
    /// (`batch_decode(untruncated_ids[:, model_max_length - 1 : -1])`); nil when nothing is dropped.
    public func truncatedText(_ text: String) -> String? {
        var ids: [Int32] = []
        encode(text, into: &ids)
        guard ids.count + 2 > maxLength else { return nil }
        return decode(ids[(maxLength - 2)...].map(Int.init))
    }

    /// transformers' `decode(ids)` (skip_special_tokens=False): token texts concatenated, the
    /// byte-level characters turned back into bytes (invalid UTF-8 becomes U+FFFD), "</w>" replaced
    /// with a space, whitespace stripped at both ends. Unknown ids are skipped.
    public func decode(_ ids: [Int]) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0, id <= Self.maxTokenID,
                  let token = addedTokenTexts[Int32(id)].map(ArraySlice.init) ?? vocab.bytes(ofID: Int32(id), in: vocabIndex)
            else { continue }
            var decoded: [UInt8] = []
            decoded.reserveCapacity(token.count)
            var allMapped = true
            for scalar in String(decoding: token, as: UTF8.self).unicodeScalars {
                let value = Int(scalar.value)
                guard value < Self.unicodeToByte.count, Self.unicodeToByte[value] >= 0 else { allMapped = false; break }
                decoded.append(UInt8(Self.unicodeToByte[value]))
            }
            if allMapped { bytes.append(contentsOf: decoded) } else { bytes.append(contentsOf: token) }
        }
        // "</w>" -> " " (ASCII, so doing it on the bytes equals doing it on the decoded text).
        var replaced: [UInt8] = []
        replaced.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x3C, i + 3 < bytes.count, bytes[i + 1] == 0x2F, bytes[i + 2] == 0x77, bytes[i + 3] == 0x3E {
                replaced.append(0x20)
                i += 4
            } else {
                replaced.append(bytes[i])
                i += 1
            }
        }
        let scalars = Array(String(decoding: replaced, as: UTF8.self).unicodeScalars)
        // Python's str.strip(): str.isspace() characters.
        func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
            (0x1C...0x1F).contains(s.value) || Self.isWhitespace(s)
        }
        guard let first = scalars.firstIndex(where: { !isPythonSpace($0) }),
              let last = scalars.lastIndex(where: { !isPythonSpace($0) }) else { return "" }
        var out = ""
        out.unicodeScalars.append(contentsOf: scalars[first...last])
        return out
    }

    // MARK: - Pipeline

    func encode(_ text: String, into ids: inout [Int32]) {
        let raw = Array(text.unicodeScalars)
        var word: [UInt8] = []
        rawAddedTokens.split(raw, 0..<raw.count) { range, addedID in
            if let addedID { ids.append(addedID); return }
            let normalized = Self.normalize(raw[range])
            normalizedAddedTokens.split(normalized, 0..<normalized.count) { range, addedID in
                if let addedID { ids.append(addedID); return }
                Self.forEachWord(in: normalized, range) { wordRange in
                    word.removeAll(keepingCapacity: true)
                    for scalar in normalized[wordRange] { word.append(contentsOf: UTF8.encode(scalar)!) }
                    bpe(word, into: &ids)
                }
            }
        }
    }

    /// BPE of one pre-token's UTF-8 bytes: start from the byte-level characters (the last one with
    /// "</w>"), then merge adjacent pairs lowest rank first, leftmost first among equal ranks, the
    /// way the tokenizers library's `Word::merge_all` does (a min-heap of (rank, position), stale
    /// entries skipped when the pair there no longer yields the same token).
    func bpe(_ word: [UInt8], into ids: inout [Int32]) {
        if let cached = cache[word] { ids.append(contentsOf: cached); return }
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        for (k, byte) in word.enumerated() {
            let id = k == word.count - 1 ? byteEndIDs[Int(byte)] : byteIDs[Int(byte)]
            if id >= 0 {
                symbols.append(id)
            } else if let unk = unkTokenID {
                symbols.append(Int32(unk))
            }
        }
        if symbols.count > 1 { mergeAll(&symbols) }
        cache[word] = symbols
        ids.append(contentsOf: symbols)
    }

    private func merge(_ left: Int32, _ right: Int32) -> UInt64? {
        merges[UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))]
    }

    private func mergeAll(_ symbols: inout [Int32]) {
        let n = symbols.count
        var next = [Int](1...n), previous = [Int](-1..<(n - 1))
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        // Heap entries: (rank << 32 | position, merged id); smallest first.
        var heap = MinHeap()
        for p in 0..<(n - 1) {
            if let m = merge(symbols[p], symbols[p + 1]) { heap.push(key: m & 0xFFFF_FFFF_0000_0000 | UInt64(p), value: Int32(truncatingIfNeeded: m)) }
        }
        while let (key, mergedID) = heap.pop() {
            let p = Int(key & 0xFFFF_FFFF)
            guard alive[p], next[p] >= 0 else { continue }
            let q = next[p]
            guard let current = merge(symbols[p], symbols[q]), Int32(truncatingIfNeeded: current) == mergedID else { continue }
            symbols[p] = mergedID
            alive[q] = false
            next[p] = next[q]
            if next[q] >= 0 { previous[next[q]] = p }
            if previous[p] >= 0, let m = merge(symbols[previous[p]], symbols[p]) {
                heap.push(key: m & 0xFFFF_FFFF_0000_0000 | UInt64(previous[p]), value: Int32(truncatingIfNeeded: m))
            }
            if next[p] >= 0, let m = merge(symbols[p], symbols[next[p]]) {
                heap.push(key: m & 0xFFFF_FFFF_0000_0000 | UInt64(p), value: Int32(truncatingIfNeeded: m))
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var p = 0
        while p >= 0 { out.append(symbols[p]); p = next[p] }
        symbols = out
    }

    // MARK: - Byte-level alphabet (GPT-2's bytes_to_unicode)

    static let byteToUnicode: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let unicodeToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in byteToUnicode.enumerated() { table[Int(scalar.value)] = Int16(byte) }
        return table
    }()
}

/// A binary min-heap of (key, value) pairs ordered by key.
struct MinHeap {
    private var keys: [UInt64] = []
    private var values: [Int32] = []

    mutating func push(key: UInt64, value: Int32) {
        keys.append(key)
        values.append(value)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard keys[child] < keys[parent] else { break }
            keys.swapAt(child, parent)
            values.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (UInt64, Int32)? {
        guard let top = keys.first else { return nil }
        let topValue = values[0]
        let last = keys.count - 1
        keys.swapAt(0, last)
        values.swapAt(0, last)
        keys.removeLast()
        values.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < keys.count && keys[left] < keys[smallest] { smallest = left }
            if right < keys.count && keys[right] < keys[smallest] { smallest = right }
            guard smallest != parent else { break }
            keys.swapAt(parent, smallest)
            values.swapAt(parent, smallest)
            parent = smallest
        }
        return (top, topValue)
    }
}

/// BPE results by pre-token bytes. Bounded: cleared when it reaches `limit` entries.
final class BPECache: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [[UInt8]: [Int32]] = [:]
    private let limit = 20_000

    subscript(word: [UInt8]) -> [Int32]? {
        get {
            lock.lock()
            defer { lock.unlock() }
            return entries[word]
        }
        set {
            lock.lock()
            defer { lock.unlock() }
            if entries.count >= limit { entries.removeAll(keepingCapacity: true) }
            entries[word] = newValue
        }
    }
}

/// The special and added tokens of a tokenizer folder, resolved the way transformers 5 does it
/// for an old-style folder (tokenization_utils_base._from_pretrained + TokenizersBackend.__init__):
///
/// - Without `added_tokens_decoder` in tokenizer_config.json, special_tokens_map.json's entries
///   override tokenizer_config.json's. The named tokens (bos, eos, unk, sep, pad, cls, mask, then
///   extra/additional special tokens) are collected in that order, skipping one equal to a token
///   already collected (a string never equals an AddedToken dict), and added one by one; for a
///   text given twice with different flags, the last one added wins. A plain string is a special
///   token with normalized=false.
/// - With `added_tokens_decoder`, its entries are the added tokens (with their flags), named
///   tokens whose text is not among them are added after, and special_tokens_map.json is ignored.
struct SpecialTokenConfig {
    struct Named {
        var content: String
        var file: String
    }
    struct Entry {
        var token: AddedToken
        var declaredID: Int32?
        var key: String
        var file: String
    }

    static let namedKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
    static let extraKeys = ["additional_special_tokens", "extra_special_tokens"]
    static let defaults = ["bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                           "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"]

    var bos: Named?, eos: Named?, unk: Named?, pad: Named?
    var maxLength = CLIPTokenizer.defaultMaxLength
    var addedTokens: [Entry] = []
    let configFile: String

    private enum Value: Equatable {
        case string(String)
        case token(AddedToken)

        var content: String {
            switch self {
            case .string(let s): return s
            case .token(let t): return t.content
            }
        }

        var addedToken: AddedToken {
            switch self {
            case .string(let s): return AddedToken(content: s, normalized: false, special: true)
            case .token(var t): t.special = true; return t
            }
        }
    }

    init(directory: URL) throws {
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let mapURL = directory.appendingPathComponent("special_tokens_map.json")
        configFile = configURL.path
        let config = try CLIPTokenizer.readJSONObject(configURL) ?? [:]
        let map = try CLIPTokenizer.readJSONObject(mapURL) ?? [:]

        if let length = config["model_max_length"], !(length is NSNull) {
            guard !(length is Bool), let value = length as? Int, value >= 2, value <= 1 << 20 else {
                throw CLIPTokenizerError.invalidSetting(file: configURL.path, key: "model_max_length",
                                                        reason: "\(length) is not an integer between 2 and \(1 << 20)")
            }
            maxLength = value
        }

        // Which file each named token comes from, and its value (nil: explicitly null).
        let useDecoder = config["added_tokens_decoder"] != nil && !(config["added_tokens_decoder"] is NSNull)
        var named: [(key: String, value: Value?, file: String)] = []
        for key in Self.namedKeys {
            if !useDecoder, let raw = map[key] {
                named.append((key, try Self.value(raw, file: mapURL.path, key: key, fromSpecialMap: true), mapURL.path))
            } else if let raw = config[key] {
                named.append((key, try Self.value(raw, file: configURL.path, key: key, fromSpecialMap: false), configURL.path))
            } else if let fallback = Self.defaults[key] {
                named.append((key, .string(fallback), configURL.path))
            }
        }
        var extras: [(key: String, value: Value?, file: String)] = []
        for key in Self.extraKeys {
            for (source, url, fromMap) in [(config, configURL, false), (map, mapURL, true)] where !(fromMap && useDecoder) {
                guard let raw = source[key], !(raw is NSNull) else { continue }
                guard let list = raw as? [Any] else {
                    if raw is [String: Any] { continue }  // model-specific named tokens: not used by CLIP
                    throw CLIPTokenizerError.invalidSetting(file: url.path, key: key, reason: "not a list")
                }
                for item in list {
                    extras.append((key, try Self.value(item, file: url.path, key: key, fromSpecialMap: fromMap), url.path))
                }
            }
        }

        func lookup(_ key: String) -> Named? {
            guard let entry = named.first(where: { $0.key == key }), let value = entry.value else { return nil }
            return Named(content: value.content, file: entry.file)
        }
        bos = lookup("bos_token")
        eos = lookup("eos_token")
        unk = lookup("unk_token")
        pad = lookup("pad_token")

        // The tokens transformers adds to the backend, in order.
        var toAdd: [(value: Value, declaredID: Int32?, key: String, file: String)] = []
        if useDecoder {
            guard let decoder = config["added_tokens_decoder"] as? [String: Any] else {
                throw CLIPTokenizerError.invalidSetting(file: configURL.path, key: "added_tokens_decoder", reason: "not an object")
            }
            var declared: [(Int32, Value)] = []
            for (idText, raw) in decoder {
                guard let id = Int32(idText), id >= 0, Int(id) <= CLIPTokenizer.maxTokenID else {
                    throw CLIPTokenizerError.invalidSetting(file: configURL.path, key: "added_tokens_decoder",
                                                            reason: "\"\(idText)\" is not a token id")
                }
                guard raw is [String: Any], let value = try Self.value(raw, file: configURL.path,
                                                                        key: "added_tokens_decoder", fromSpecialMap: false) else {
                    throw CLIPTokenizerError.invalidSetting(file: configURL.path, key: "added_tokens_decoder",
                                                            reason: "entry \(idText) is not an AddedToken object")
                }
                declared.append((id, value))
            }
            declared.sort { $0.0 < $1.0 }
            for (id, value) in declared { toAdd.append((value, id, "added_tokens_decoder", configURL.path)) }
            let declaredContents = Set(declared.map { $0.1.content })
            for item in named + extras {
                guard let value = item.value, !declaredContents.contains(value.content),
                      !toAdd.contains(where: { $0.value == value }) else { continue }
                toAdd.append((value, nil, item.key, item.file))
            }
        } else {
            for item in named + extras {
                guard let value = item.value, !toAdd.contains(where: { $0.value == value }) else { continue }
                toAdd.append((value, nil, item.key, item.file))
            }
        }

        // The backend keeps one AddedToken per text: an identical one is ignored, a different one
        // replaces it.
        for item in toAdd {
            let token = item.value.addedToken
            guard !token.content.isEmpty else { continue }
            if let index = addedTokens.firstIndex(where: { $0.token.content == token.content }) {
                if addedTokens[index].token != token {
                    addedTokens[index].token = token
                    addedTokens[index].key = item.key
                    addedTokens[index].file = item.file
                }
            } else {
                addedTokens.append(Entry(token: token, declaredID: item.declaredID, key: item.key, file: item.file))
            }
        }
    }

    /// A token setting: a string, an AddedToken dict ({"content": ..., "normalized": ..., ...}),
    /// or null (nil).
    private static func value(_ raw: Any, file: String, key: String, fromSpecialMap: Bool) throws -> Value? {
        if raw is NSNull { return nil }
        if let string = raw as? String { return .string(string) }
        guard let dict = raw as? [String: Any] else {
            throw CLIPTokenizerError.invalidSetting(file: file, key: key, reason: "expected a string or an AddedToken object")
        }
        guard let content = dict["content"] as? String else {
            throw CLIPTokenizerError.invalidSetting(file: file, key: key, reason: "AddedToken object without a \"content\" string")
        }
        func flag(_ name: String, _ fallback: Bool) throws -> Bool {
            guard let value = dict[name], !(value is NSNull) else { return fallback }
            guard let bool = value as? Bool else {
                throw CLIPTokenizerError.invalidSetting(file: file, key: key, reason: "\"\(name)\" is not a boolean")
            }
            return bool
        }
        // special_tokens_map.json entries become AddedToken(..., special=True); tokenizer_config.json
        // ones keep their "special" (default false). "normalized" defaults to `not special`.
        let special = fromSpecialMap ? true : try flag("special", false)
        return .token(AddedToken(content: content, singleWord: try flag("single_word", false),
                                 lstrip: try flag("lstrip", false), rstrip: try flag("rstrip", false),
                                 normalized: try flag("normalized", !special), special: special))
    }
}
