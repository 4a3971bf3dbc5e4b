// AUTOMATIC1111's extra-network tags in a prompt: `<lora:NAME>`, `<lora:NAME:WEIGHT>`,
// `<lora:NAME:TE:UNET>`, `<lora:NAME:te=W:unet=W>`. Ported from stable-diffusion-webui
// modules/extra_networks.py (`re_extra_net = <(\w+):([^>]+)>`, tags removed from the encoded text)
// and extensions-builtin/Lora/extra_networks_lora.py (te multiplier default 1, unet default te).
// Unlike A1111, which only warns, a LoRA that does not exist is an error (404 naming it).
import Foundation
import HotswapLoRA

enum PromptTags {
    /// The prompt without its tags and the adapters the tags name, in order of first appearance
    /// (a name tagged twice gets the sum of its weights, as A1111 applies it twice).
    struct Extracted: Equatable {
        var prompt: String
        var adapters: [AdapterSpec]
    }

    /// `<lora:...>` and its LyCORIS-extension spelling `<lyco:...>`.
    static let adapterNetworks: Set<String> = ["lora", "lyco"]

    static func extract(_ prompt: String) throws -> Extracted {
        var text = ""
        var adapters: [AdapterSpec] = []
        var rest = Substring(prompt)
        while let open = rest.firstIndex(of: "<") {
            text += rest[..<open]
            let afterOpen = rest.index(after: open)
            // <(\w+):([^>]+)>
            let networkEnd = rest[afterOpen...].firstIndex { !isWordCharacter($0) } ?? rest.endIndex
            guard networkEnd > afterOpen, networkEnd < rest.endIndex, rest[networkEnd] == ":",
                  let close = rest[rest.index(after: networkEnd)...].firstIndex(of: ">"),
                  close > rest.index(after: networkEnd) else {
                text.append("<")
                rest = rest[afterOpen...]
                continue
            }
            let network = String(rest[afterOpen..<networkEnd])
            let arguments = String(rest[rest.index(after: networkEnd)..<close])
            let tag = String(rest[open...close])
            guard adapterNetworks.contains(network) else {
                throw APIError(.unprocessableContent, code: "unsupported_extra_network",
                               message: "the prompt's \(tag.prefix(80)) asks for a \(network) extra network; only <lora:NAME:WEIGHT> is supported",
                               field: "prompt")
            }
            let spec = try adapter(arguments, tag: tag)
            if let i = adapters.firstIndex(where: { $0.name == spec.name }) {
                adapters[i].scale += spec.scale
            } else {
                adapters.append(spec)
            }
            rest = rest[rest.index(after: close)...]
        }
        text += rest
        return Extracted(prompt: text, adapters: adapters)
    }

    /// `NAME[:TE[:UNET]]` with `te=`/`unet=` as named arguments.
    static func adapter(_ arguments: String, tag: String) throws -> AdapterSpec {
        var positional: [String] = []
        var named: [String: String] = [:]
        for item in arguments.split(separator: ":", omittingEmptySubsequences: false).map(String.init) {
            if let equals = item.firstIndex(of: "=") {
                named[String(item[..<equals]).trimmingCharacters(in: .whitespaces)] = String(item[item.index(after: equals)...])
            } else {
                positional.append(item)
            }
        }
        func refuse(_ why: String) -> APIError {
            APIError(.unprocessableContent, code: "invalid_lora_tag", message: "the prompt's \(tag.prefix(80)): \(why)", field: "prompt")
        }
        let name = positional.first ?? ""
        guard !name.isEmpty else { throw refuse("no LoRA name") }
        func weight(_ text: String, _ what: String) throws -> Float {
            guard let value = Float(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
                throw refuse("the \(what) '\(text.prefix(32))' is not a number")
            }
            return value
        }
        var te: Float = positional.count > 1 ? try weight(positional[1], "weight") : 1
        if let text = named["te"] { te = try weight(text, "te weight") }
        var unet = positional.count > 2 ? try weight(positional[2], "unet weight") : te
        if let text = named["unet"] { unet = try weight(text, "unet weight") }
        if positional.count > 3 || named["dyn"] != nil { throw refuse("dyn (dynamic rank) is not supported") }
        if let unknown = named.keys.sorted().first(where: { $0 != "te" && $0 != "unet" && $0 != "dyn" }) {
            throw refuse("unknown argument '\(unknown.prefix(32))'")
        }
        guard te == unet else {
            throw refuse("separate text-encoder (\(te)) and UNet (\(unet)) weights are not supported; give one weight")
        }
        return AdapterSpec(name: name, scale: te)
    }

    /// Python's `\w` on str: letters, digits (any script) and underscore.
    static func isWordCharacter(_ c: Character) -> Bool {
        c == "_" || c.isLetter || c.isNumber
    }
}
