import Foundation
import HotswapTestSupport
import Testing
@testable import HotswapModels

// Expected values: Tests/Fixtures/tokenizer/ids.json and unicode.json, written by
// Scripts/fixtures/tokenizer.py from transformers 5.23's CLIPTokenizer (tokenizers 0.23.3) loaded
// with CLIPTokenizer.from_pretrained on the fixture folders, called as diffusers calls it:
// tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).
// Regenerate: /work/venv/bin/python Scripts/fixtures/tokenizer.py

private struct IDFixtures: Decodable {
    struct Folder: Decodable {
        var max_length: Int
        var bos: Int
        var eos: Int
        var pad: Int
        var cases: [Case]
    }
    struct Case: Decodable {
        var text: String
        var encode: [Int]
        var tokenize: [Int]
        var untruncated_count: Int
        var removed_text: String?
    }
    struct DecodeCase: Decodable {
        var ids: [Int]
        var text: String
    }
    struct Random: Decodable {
        var texts: [String]
        var clip: [[Int]]
        var clipPadBang: [[Int]]
        var clipDecode: [String]

        enum CodingKeys: String, CodingKey {
            case texts, clip, clipPadBang = "clip-pad-bang", clipDecode = "clip_decode"
        }
    }
    var transformers: String
    var folders: [String: Folder]
    var decode: [DecodeCase]
    var random: Random
}

private enum Loaded {
    static let fixtures = Result<IDFixtures, Error> { try Fixtures.json("tokenizer/ids.json") }

    static let tokenizers: [String: Result<CLIPTokenizer, Error>] = {
        var out: [String: Result<CLIPTokenizer, Error>] = [:]
        for name in ["clip", "clip-pad-bang", "variants/hub-sd1", "variants/hub-sd2",
                     "variants/added-tokens-decoder", "variants/short", "variants/mini"] {
            out[name] = Result { try load(name) }
        }
        return out
    }()

    /// clip/ and clip-pad-bang/ are complete folders; variants/NAME/ holds config files only (and
    /// mini/ its own vocabulary), completed here with clip/'s vocab.json and merges.txt.
    static func load(_ name: String) throws -> CLIPTokenizer {
        let folder = Fixtures.url("tokenizer/\(name)")
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("vocab.json").path) {
            return try CLIPTokenizer(directory: folder)
        }
        return try withTemporaryFolder { tmp in
            for file in ["tokenizer_config.json", "special_tokens_map.json"] {
                try FileManager.default.copyItem(at: folder.appendingPathComponent(file), to: tmp.appendingPathComponent(file))
            }
            for file in ["vocab.json", "merges.txt"] {
                try FileManager.default.createSymbolicLink(at: tmp.appendingPathComponent(file),
                                                           withDestinationURL: Fixtures.url("tokenizer/clip/\(file)"))
            }
            return try CLIPTokenizer(directory: tmp)
        }
    }
}

private func withTemporaryFolder<T>(_ body: (URL) throws -> T) throws -> T {
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    return try body(tmp)
}

/// A small, valid folder to break one file of.
private let miniVocab = #"{"a": 0, "b": 1, "ab": 2, "a</w>": 3, "b</w>": 4, "ab</w>": 5, "<|startoftext|>": 6, "<|endoftext|>": 7}"#
private let miniMerges = "#version: 0.2\na b\na b</w>\n"

private func miniFolder(_ tmp: URL, vocab: String = miniVocab, merges: String? = miniMerges,
                        config: String? = nil, specialMap: String? = nil) throws {
    try vocab.write(to: tmp.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
    if let merges { try merges.write(to: tmp.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8) }
    if let config { try config.write(to: tmp.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8) }
    if let specialMap {
        try specialMap.write(to: tmp.appendingPathComponent("special_tokens_map.json"), atomically: true, encoding: .utf8)
    }
}

private func loadError(_ setUp: (URL) throws -> Void) throws -> CLIPTokenizerError? {
    try withTemporaryFolder { tmp in
        try setUp(tmp)
        do {
            _ = try CLIPTokenizer(directory: tmp)
            return nil
        } catch let error as CLIPTokenizerError {
            return error
        }
    }
}

@Suite struct CLIPTokenizerTests {
    static let folderNames = ["clip", "clip-pad-bang", "variants/hub-sd1", "variants/hub-sd2",
                              "variants/added-tokens-decoder", "variants/short", "variants/mini"]

    @Test(arguments: folderNames)
    func matchesTransformers(folder: String) throws {
        let fixtures = try Loaded.fixtures.get()
        let expected = try #require(fixtures.folders[folder])
        let tokenizer = try #require(try Loaded.tokenizers[folder]?.get())
        #expect(tokenizer.maxLength == expected.max_length)
        #expect(tokenizer.bosTokenID == expected.bos)
        #expect(tokenizer.eosTokenID == expected.eos)
        #expect(tokenizer.padTokenID == expected.pad)
        #expect(!expected.cases.isEmpty)
        for c in expected.cases {
            #expect(tokenizer.encode(c.text) == c.encode, "encode \(folder) \(c.text.debugDescription)")
            #expect(tokenizer.tokenize(c.text) == c.tokenize, "tokenize \(folder) \(c.text.debugDescription)")
            #expect(tokenizer.untruncatedCount(c.text) == c.untruncated_count, "count \(folder) \(c.text.debugDescription)")
            #expect(tokenizer.truncatedText(c.text).map { Array($0.unicodeScalars) } == c.removed_text.map { Array($0.unicodeScalars) },
                    "removed text \(folder) \(c.text.debugDescription)")
        }
    }

    @Test func sd1AndSD2Basics() throws {
        let sd1 = try #require(try Loaded.tokenizers["clip"]?.get())
        let sd2 = try #require(try Loaded.tokenizers["clip-pad-bang"]?.get())
        #expect(sd1.maxLength == 77 && sd1.bosTokenID == 49406 && sd1.eosTokenID == 49407 && sd1.padTokenID == 49407)
        #expect(sd2.padTokenID == 0)
        #expect(sd1.encode("a photo of a cat") == [320, 1125, 539, 320, 2368])
        #expect(sd1.tokenize("a photo of a cat").count == 77)
        // SD2's pad token "!" is a special token: split out of the text like <|endoftext|>.
        #expect(sd1.encode("!!!") == [995])
        #expect(sd2.encode("!!!") == [0, 0, 0])
        #expect(sd1.encode("a <|endoftext|> b") == [320, 49407, 321])
    }

    @Test func decodeMatchesTransformers() throws {
        let fixtures = try Loaded.fixtures.get()
        let tokenizer = try #require(try Loaded.tokenizers["clip"]?.get())
        for c in fixtures.decode {
            #expect(Array(tokenizer.decode(c.ids).unicodeScalars) == Array(c.text.unicodeScalars), "decode \(c.ids)")
        }
    }

    /// 300 random strings mixing scripts, combining marks, Hangul jamo, special-token fragments,
    /// apostrophes, '!' and odd whitespace (Scripts/fixtures/tokenizer.py, random_texts).
    @Test func randomStringsMatchTransformers() throws {
        let random = try Loaded.fixtures.get().random
        let sd1 = try #require(try Loaded.tokenizers["clip"]?.get())
        let sd2 = try #require(try Loaded.tokenizers["clip-pad-bang"]?.get())
        #expect(random.texts.count == 300)
        for (i, text) in random.texts.enumerated() {
            #expect(sd1.encode(text) == random.clip[i], "SD1 \(text.debugDescription)")
            #expect(sd2.encode(text) == random.clipPadBang[i], "SD2 \(text.debugDescription)")
            // Compared scalar by scalar: String == would treat canonically equivalent texts as equal.
            #expect(Array(sd1.decode(random.clip[i]).unicodeScalars) == Array(random.clipDecode[i].unicodeScalars),
                    "decode \(text.debugDescription)")
        }
    }

    /// Every Unicode scalar: the pre-tokenizer class (whitespace / letter / number / other), the
    /// Lowercase and NFC normalizations, and NFC after U+0345 (which shows the combining classes
    /// the NFC tables know), against the tokenizers library's own (unicode.json).
    @Test func unicodeTablesMatchTokenizersLibrary() throws {
        struct Tables: Decodable {
            var class_runs: [[Int]]
            var lowercase: [String: [UInt32]]
            var nfc: [String: [UInt32]]
            var nfc_after_0345: [String: [UInt32]]
        }
        let tables: Tables = try Fixtures.json("tokenizer/unicode.json")
        var classMismatches: [String] = []
        for (k, run) in tables.class_runs.enumerated() {
            let end = k + 1 < tables.class_runs.count ? tables.class_runs[k + 1][0] : 0x110000
            for value in run[0]..<end {
                guard let scalar = Unicode.Scalar(UInt32(value)) else { continue }
                if Int(CLIPTokenizer.scalarClass(scalar).rawValue) != run[1] {
                    classMismatches.append(String(value, radix: 16))
                }
            }
        }
        #expect(classMismatches.isEmpty, "class differs for U+\(classMismatches.prefix(20).joined(separator: " U+"))")

        var lowerMismatches: [String] = [], nfcMismatches: [String] = [], orderMismatches: [String] = []
        for value in 0..<0x110000 {
            guard let scalar = Unicode.Scalar(UInt32(value)) else { continue }
            var lowered: [Unicode.Scalar] = []
            CLIPTokenizer.appendLowercase(scalar, to: &lowered)
            let expectedLower = tables.lowercase[String(value)] ?? [UInt32(value)]
            if lowered.map(\.value) != expectedLower { lowerMismatches.append(String(value, radix: 16)) }
            let composed = CLIPTokenizer.nfc([scalar]).map(\.value)
            if composed != tables.nfc[String(value)] ?? [UInt32(value)] { nfcMismatches.append(String(value, radix: 16)) }
            // Combining classes as the tokenizers library's (Unicode 9.0) NFC tables have them.
            let probe = CLIPTokenizer.nfc(["\u{345}", scalar]).map(\.value)
            if probe != tables.nfc_after_0345[String(value)] ?? [0x345, UInt32(value)] {
                orderMismatches.append(String(value, radix: 16))
            }
        }
        #expect(lowerMismatches.isEmpty, "lowercase differs for U+\(lowerMismatches.prefix(20).joined(separator: " U+"))")
        #expect(nfcMismatches.isEmpty, "NFC differs for U+\(nfcMismatches.prefix(20).joined(separator: " U+"))")
        #expect(orderMismatches.isEmpty, "NFC of U+0345 + U+\(orderMismatches.prefix(20).joined(separator: " U+")) differs")
    }

    @Test func concurrentUseGivesTheSameIDs() async throws {
        let fixtures = try Loaded.fixtures.get()
        let tokenizer = try #require(try Loaded.tokenizers["clip"]?.get())
        let texts = try #require(fixtures.folders["clip"]).cases.map(\.text)
        let serial = texts.map { tokenizer.tokenize($0) }
        let parallel = await withTaskGroup(of: (Int, [Int]).self) { group in
            for (i, text) in texts.enumerated() { group.addTask { (i, tokenizer.tokenize(text)) } }
            var out = [[Int]](repeating: [], count: texts.count)
            for await (i, ids) in group { out[i] = ids }
            return out
        }
        #expect(parallel == serial)
    }

    /// Generous bounds: the machine is shared. Typical: init ~30 ms, a 77-token prompt ~30 µs.
    @Test func speed() throws {
        let start = Date()
        let tokenizer = try CLIPTokenizer(directory: Fixtures.url("tokenizer/clip"))
        let initSeconds = Date().timeIntervalSince(start)
        let prompt = "oil painting of a lighthouse on a cliff, stormy sea, dramatic lighting, by greg rutkowski and alphonse mucha, "
            + "highly detailed, 8k, trending on artstation, masterpiece, best quality, soft light, volumetric fog, cinematic"
        #expect(tokenizer.untruncatedCount(prompt) > 40)
        // Best of 5 batches: other tests (and other users of the machine) run alongside.
        var perPrompt = Double.infinity
        for batch in 0..<5 {
            let start = Date()
            for k in 0..<40 { _ = tokenizer.tokenize(prompt + " \(batch) \(k)") }
            perPrompt = min(perPrompt, Date().timeIntervalSince(start) / 40)
        }
        print("CLIPTokenizer: init \(Int(initSeconds * 1000)) ms, tokenize \(Int(perPrompt * 1_000_000)) µs per prompt")
        #expect(initSeconds < 2)
        #expect(perPrompt < 0.001)
    }

    // MARK: - Folders that cannot be loaded

    @Test func miniFolderLoads() throws {
        try withTemporaryFolder { tmp in
            try miniFolder(tmp)
            let tokenizer = try CLIPTokenizer(directory: tmp)
            #expect(tokenizer.encode("ab ba") == [5, 1, 3])
            #expect(tokenizer.maxLength == 77 && tokenizer.bosTokenID == 6 && tokenizer.padTokenID == 7)
        }
    }

    @Test func missingVocab() throws {
        let error = try loadError { tmp in
            try miniFolder(tmp)
            try FileManager.default.removeItem(at: tmp.appendingPathComponent("vocab.json"))
        }
        guard case .missingFile(let file)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file.hasSuffix("vocab.json"))
        #expect(error?.description.contains("vocab.json: file not found") == true)
    }

    @Test func missingMerges() throws {
        let error = try loadError { tmp in try miniFolder(tmp, merges: nil) }
        guard case .missingFile(let file)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file.hasSuffix("merges.txt"))
    }

    @Test(arguments: [
        ("#version: 0.2\na b\na b c\n", 3, "3 parts"),
        ("#version: 0.2\na b\n\na b</w>\n", 3, "1 parts"),
        ("#version: 0.2\na  b\n", 2, "3 parts"),
        ("#version: 0.2\na b\nq b\n", 3, "token \"q\" is not in vocab.json"),
        ("#version: 0.2\nb a\n", 2, "token \"ba\" is not in vocab.json"),
        ("#version: 0.2\na b\n\n", 3, "1 parts"),
    ])
    func corruptMerges(merges: String, line: Int, reason: String) throws {
        let error = try loadError { tmp in try miniFolder(tmp, merges: merges) }
        guard case .malformedMerges(let file, let errorLine, let errorReason)? = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(file.hasSuffix("merges.txt"))
        #expect(errorLine == line)
        #expect(errorReason.contains(reason), "\(errorReason)")
    }

    @Test func mergesWithCRLFLoad() throws {
        try withTemporaryFolder { tmp in
            try miniFolder(tmp, merges: "#version: 0.2\r\na b\r\na b</w>\r\n")
            #expect(try CLIPTokenizer(directory: tmp).encode("ab") == [5])
        }
    }

    @Test(arguments: [
        #"{"a": 0, "b": 1"#,
        #"{"a": 0, "b": 1,}"#,
        #"{"a": 0.5}"#,
        #"{"a": -1}"#,
        #"{"a": "0"}"#,
        #"["a", "b"]"#,
        #"{"a": 0} x"#,
        #"{"\ud800": 0}"#,
        "",
        "{}",
    ])
    func malformedVocab(vocab: String) throws {
        let error = try loadError { tmp in try miniFolder(tmp, vocab: vocab) }
        guard case .malformedJSON(let file, _)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file.hasSuffix("vocab.json"))
    }

    @Test func vocabEscapes() throws {
        try withTemporaryFolder { tmp in
            // "\u0061" is "a"; the escaped and the literal "<|endoftext|>" must both work.
            try miniFolder(tmp, vocab: #"{"\u0061": 0, "b": 1, "ab": 2, "a<\/w>": 3, "b</w>": 4, "ab</w>": 5, "<|startoftext|>": 6, "\u003c|endoftext|>": 7, "\ud83d\ude00": 8}"#)
            let tokenizer = try CLIPTokenizer(directory: tmp)
            #expect(tokenizer.encode("ab a") == [5, 3])
            #expect(tokenizer.eosTokenID == 7)
            #expect(tokenizer.vocab.id(of: "😀") == 8)
        }
    }

    @Test func padTokenNotInVocab() throws {
        let error = try loadError { tmp in
            try miniFolder(tmp, specialMap: #"{"pad_token": {"content": "<pad>", "normalized": false}}"#)
        }
        #expect(error == .tokenNotInVocabulary(file: error.map(filePath) ?? "", key: "pad_token", token: "<pad>"))
        #expect(error.map(filePath)?.hasSuffix("special_tokens_map.json") == true)
    }

    @Test func padTokenAsDictOrString() throws {
        try withTemporaryFolder { tmp in
            try miniFolder(tmp, config: #"{"pad_token": {"__type": "AddedToken", "content": "a", "normalized": false}}"#)
            #expect(try CLIPTokenizer(directory: tmp).padTokenID == 0)
        }
        try withTemporaryFolder { tmp in
            try miniFolder(tmp, config: #"{"pad_token": "ab"}"#)
            #expect(try CLIPTokenizer(directory: tmp).padTokenID == 2)
        }
    }

    @Test(arguments: [
        (#"{"pad_token": {"lstrip": false}}"#, "pad_token"),
        (#"{"pad_token": 5}"#, "pad_token"),
        (#"{"pad_token": null}"#, "pad_token"),
        (#"{"model_max_length": 1e30}"#, "model_max_length"),
        (#"{"model_max_length": "77"}"#, "model_max_length"),
        (#"{"model_max_length": 1}"#, "model_max_length"),
    ])
    func invalidSettings(config: String, key: String) throws {
        let error = try loadError { tmp in try miniFolder(tmp, config: config) }
        guard case .invalidSetting(let file, let errorKey, _)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file.hasSuffix("tokenizer_config.json"))
        #expect(errorKey == key)
    }

    @Test func malformedConfigJSON() throws {
        let error = try loadError { tmp in try miniFolder(tmp, config: #"{"pad_token": "#) }
        guard case .malformedJSON(let file, _)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(file.hasSuffix("tokenizer_config.json"))
    }
}

private func filePath(_ error: CLIPTokenizerError) -> String {
    switch error {
    case .missingFile(let file), .unreadableFile(let file, _), .malformedJSON(let file, _),
         .malformedMerges(let file, _, _), .tokenNotInVocabulary(let file, _, _), .invalidSetting(let file, _, _):
        return file
    }
}
