import Foundation

// Text handling before BPE, mirroring the `tokenizers` pipeline transformers 5 builds for CLIP:
//   added tokens (split out of the raw text, or of the normalized text for normalized=true ones)
//   normalizer:    NFC (Unicode 9.0 tables), then `\s+` -> " ", then per-character lowercase
//   pre-tokenizer: Split(`<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
//                  invert, removed), then ByteLevel (GPT-2 regex; only changes the two literal
//                  special-token pieces: "<|", "endoftext", "|>")
// Everything works on Unicode scalars; Swift `Character`s (grapheme clusters) never appear.

/// How the pre-tokenizer's regex sees a scalar.
enum ScalarClass: UInt8 {
    case whitespace = 0  // \s (Unicode White_Space)
    case letter = 1      // \p{L}
    case number = 2      // \p{N}
    case other = 3       // [^\s\p{L}\p{N}]
}

extension CLIPTokenizer {
    /// The tokenizers wheel's Oniguruma has Unicode 16.0 tables; scalars assigned later (which the
    /// Swift runtime may already know as letters or numbers: Swift 6.3 has Unicode 17.0) are
    /// unassigned, hence "other", there. Checked against every scalar by the unicode.json test.
    static let regexUnicodeVersion = (major: 16, minor: 0)

    private static let asciiClasses: [ScalarClass] = (0..<128).map { value -> ScalarClass in
        switch value {
        case 0x09...0x0D, 0x20: return .whitespace
        case 0x30...0x39: return .number
        case 0x41...0x5A, 0x61...0x7A: return .letter
        default: return .other
        }
    }

    /// Whether the scalar was assigned by `regexUnicodeVersion` (the regex crate that checks
    /// single_word added tokens is at Unicode 16.0 too).
    static func isKnownToRegexTables(_ properties: Unicode.Scalar.Properties) -> Bool {
        guard let age = properties.age else { return false }
        return age.major < regexUnicodeVersion.major
            || (age.major == regexUnicodeVersion.major && age.minor <= regexUnicodeVersion.minor)
    }

    static func scalarClass(_ scalar: Unicode.Scalar) -> ScalarClass {
        if scalar.value < 0x80 { return asciiClasses[Int(scalar.value)] }
        let properties = scalar.properties
        if properties.isWhitespace { return .whitespace }
        guard isKnownToRegexTables(properties) else { return .other }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x80 ? asciiClasses[Int(scalar.value)] == .whitespace : scalar.properties.isWhitespace
    }

    /// Rust `char::to_lowercase`: the full, context-free lowercase mapping (no final-sigma rule).
    static func appendLowercase(_ scalar: Unicode.Scalar, to out: inout [Unicode.Scalar]) {
        if scalar.value < 0x80 {
            out.append((0x41...0x5A).contains(scalar.value) ? Unicode.Scalar(scalar.value + 0x20)! : scalar)
        } else {
            out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
        }
    }

    /// The tokenizers library's NFC (its unicode-normalization-alignments crate) has Unicode 9.0
    /// tables: a scalar assigned later has no combining class, decomposition or composition there.
    static let nfcUnicodeVersion = (major: 9, minor: 0)

    /// The only scalars with combining class 0 whose decomposition starts with a non-starter.
    /// The standard library's NFC decomposes them but does not reorder the marks that result
    /// ("\u{345}\u{F73}" stays U+0345 U+0F71 U+0F72); given decomposed, it does (U+0F71 U+0F72
    /// U+0345, as tokenizers and Python give). They never recompose (composition exclusions).
    private static let tibetanVowelSigns: [UInt32: [Unicode.Scalar]] = [
        0x0F73: ["\u{0F71}", "\u{0F72}"], 0x0F75: ["\u{0F71}", "\u{0F74}"], 0x0F81: ["\u{0F71}", "\u{0F80}"],
    ]

    /// NFC as the tokenizers library computes it. A scalar newer than `nfcUnicodeVersion` is, to
    /// those tables, a starter that never composes: it splits the text into runs normalized
    /// separately. Within a run, the current tables agree with Unicode 9.0 (normalization
    /// stability: combining classes and decompositions of assigned scalars never change, and no
    /// new composition joins two older scalars).
    ///
    /// The runs go through the standard library's normalizer (`_nfcCodeUnits`, public though
    /// underscored; Foundation builds on it). Foundation's `precomposedStringWithCanonicalMapping`
    /// is not used: on Linux (Swift 6.3) it gets Hangul wrong, e.g. U+AC54 U+11BE stays two
    /// scalars instead of U+AC6B, and U+1113 U+1161 becomes U+D7A4.
    static func nfc<C: Collection>(_ scalars: C) -> [Unicode.Scalar] where C.Element == Unicode.Scalar {
        // Scalars below U+0300 are NFC-stable and never compose with a following one below U+0300.
        guard scalars.contains(where: { $0.value >= 0x300 }) else { return Array(scalars) }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        var run = ""
        func flush() {
            guard !run.isEmpty else { return }
            out.append(contentsOf: String(decoding: run._nfcCodeUnits, as: UTF8.self).unicodeScalars)
            run = ""
        }
        for scalar in scalars {
            if scalar.value >= 0x300, let age = scalar.properties.age,
               age.major > nfcUnicodeVersion.major || (age.major == nfcUnicodeVersion.major && age.minor > nfcUnicodeVersion.minor) {
                flush()
                out.append(scalar)
            } else if let decomposed = tibetanVowelSigns[scalar.value] {
                run.unicodeScalars.append(contentsOf: decomposed)
            } else {
                run.unicodeScalars.append(scalar)
            }
        }
        flush()
        return out
    }

    /// The CLIP normalizer: NFC, runs of whitespace -> one space, lowercase.
    static func normalize<C: Collection>(_ scalars: C) -> [Unicode.Scalar] where C.Element == Unicode.Scalar {
        let composed = nfc(scalars)
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(composed.count)
        var inWhitespace = false
        for scalar in composed {
            if isWhitespace(scalar) {
                if !inWhitespace { out.append(" ") }
                inWhitespace = true
                continue
            }
            inWhitespace = false
            appendLowercase(scalar, to: &out)
        }
        return out
    }

    private static let startOfText = Array("<|startoftext|>".unicodeScalars)
    private static let endOfText = Array("<|endoftext|>".unicodeScalars)

    /// Calls `emit` with the scalar range of every pre-token ("word") of a normalized piece.
    static func forEachWord(in s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>) -> Void) {
        var i = range.lowerBound
        let end = range.upperBound
        func hasLiteral(_ literal: [Unicode.Scalar]) -> Bool {
            guard end - i >= literal.count else { return false }
            for k in 0..<literal.count where s[i + k] != literal[k] { return false }
            return true
        }
        while i < end {
            let scalar = s[i]
            let kind = scalarClass(scalar)
            if kind == .whitespace { i += 1; continue }
            if scalar == "<", let literal = [startOfText, endOfText].first(where: hasLiteral) {
                // The regex's first two alternatives; ByteLevel's GPT-2 regex then splits the piece.
                emit(i..<(i + 2))
                emit((i + 2)..<(i + literal.count - 2))
                emit((i + literal.count - 2)..<(i + literal.count))
                i += literal.count
                continue
            }
            if scalar == "'" && i + 1 < end {
                let next = s[i + 1]
                var length = 0
                switch next {
                case "s", "t", "m", "d": length = 2
                case "r", "v": length = (i + 2 < end && s[i + 2] == "e") ? 3 : 0
                case "l": length = (i + 2 < end && s[i + 2] == "l") ? 3 : 0
                default: length = 0
                }
                if length > 0 {
                    emit(i..<(i + length))
                    i += length
                    continue
                }
            }
            switch kind {
            case .letter:
                var j = i + 1
                while j < end && scalarClass(s[j]) == .letter { j += 1 }
                emit(i..<j)
                i = j
            case .number:
                emit(i..<(i + 1))
                i += 1
            default:
                var j = i + 1
                while j < end && scalarClass(s[j]) == .other { j += 1 }
                emit(i..<j)
                i = j
            }
        }
    }
}

/// A token split out of the text before normalization/BPE (the special tokens, entries of
/// tokenizer_config.json's added_tokens_decoder).
struct AddedToken: Sendable, Equatable {
    var content: String
    var singleWord = false
    var lstrip = false
    var rstrip = false
    var normalized = false
    var special = true
}

/// The added tokens matched against one form of the text (raw or normalized), leftmost-longest,
/// like the tokenizers library's AddedVocabulary.
struct AddedTokenMatcher: Sendable {
    struct Pattern: Sendable {
        var scalars: [Unicode.Scalar]
        var id: Int32
        var singleWord: Bool
    }
    var patterns: [Pattern] = []

    var isEmpty: Bool { patterns.isEmpty }

    /// regex crate `\w`: Alphabetic, marks, decimal numbers, connector punctuation, Join_Control.
    static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        guard CLIPTokenizer.isKnownToRegexTables(properties) else { return false }
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// Splits `s[range]` into pieces: `(range, id)` for a matched added token, `(range, nil)` for
    /// text between them. lstrip/rstrip are not applied: the whitespace they would take is
    /// dropped by the pre-tokenizer anyway, so they cannot change the ids.
    func split(_ s: [Unicode.Scalar], _ range: Range<Int>, _ emit: (Range<Int>, Int32?) -> Void) {
        guard !patterns.isEmpty else { emit(range, nil); return }
        var pieceStart = range.lowerBound
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            var best: Pattern?
            for pattern in patterns where pattern.scalars.count > (best?.scalars.count ?? 0) && pattern.scalars.count <= end - i {
                var matches = true
                for k in 0..<pattern.scalars.count where s[i + k] != pattern.scalars[k] { matches = false; break }
                if matches { best = pattern }
            }
            guard let match = best else { i += 1; continue }
            let stop = i + match.scalars.count
            if match.singleWord {
                let wordBefore = i > range.lowerBound && Self.isWordScalar(s[i - 1])
                let wordAfter = stop < end && Self.isWordScalar(s[stop])
                if wordBefore || wordAfter { i = stop; continue }  // discarded; the search goes on after it
            }
            if pieceStart < i { emit(pieceStart..<i, nil) }
            emit(i..<stop, match.id)
            pieceStart = stop
            i = stop
        }
        if pieceStart < end { emit(pieceStart..<end, nil) }
    }
}
