import Foundation
import HotswapTestSupport
import Testing
import HotswapPipeline

/// `--model FILE.safetensors` and `hotswap convert` as a user runs them: exit status, one-line
/// errors, nothing written on failure.
@Suite struct SingleFileCommandTests {
    static let sd1 = Fixtures.url("single_file/sd1-tiny.safetensors").path
    static let sd2 = Fixtures.url("single_file/sd2-tiny.safetensors").path

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-single-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func expectOneLineError(_ result: HotswapProcess.Result, mentions: String) {
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(mentions), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
    }

    @Test func convertThenRenderTheFolderAndTheFileAlike() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = dir.appendingPathComponent("sd2")
        let converted = try HotswapProcess.run(["convert", Self.sd2, "--to", folder.path])
        #expect(converted.status == 0, "\(converted.stderr)")
        #expect(converted.stdout.contains("SD2.x") && converted.stdout.contains("v_prediction"))
        var pngs: [[UInt8]] = []
        for model in [Self.sd2, folder.path] {
            let out = dir.appendingPathComponent("\(pngs.count).png")
            let result = try HotswapProcess.run(["render", "--model", model, "--prompt", "a red circle", "--steps", "2",
                                                 "--seed", "3", "--width", "64", "--height", "64", "--out", out.path, "--quiet"])
            #expect(result.status == 0, "\(result.stderr)")
            let png = try PNGReader.read(url: out)
            #expect(png.text["parameters"]?.contains("Model family: SD2.x") == true, "\(png.text)")
            pngs.append(png.rgb)
        }
        #expect(pngs[0] == pngs[1])
        // A second convert to the same place is refused and changes nothing.
        let again = try HotswapProcess.run(["convert", Self.sd1, "--to", folder.path])
        expectOneLineError(again, mentions: "already exists")
        #expect(FileManager.default.contents(atPath: folder.appendingPathComponent("scheduler/scheduler_config.json").path)
            .map { String(decoding: $0, as: UTF8.self).contains("v_prediction") } == true)
    }

    /// An SDXL folder through the CLI: default size from its UNet, the family in the infotext and
    /// in the timing row.
    @Test func rendersAnSDXLFolderAndRecordsTheFamily() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("xl.png"), db = dir.appendingPathComponent("t.db")
        let result = try HotswapProcess.run(["render", "--model", Fixtures.url("models/sdxl-tiny").path, "--prompt", "a red circle",
                                             "--steps", "2", "--seed", "5", "--out", out.path, "--timings-db", db.path, "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        let png = try PNGReader.read(url: out)
        #expect(png.width == 16 * 4 && png.height == 16 * 4)  // sample_size x vae scale factor
        #expect(png.text["parameters"]?.contains("Model family: SDXL") == true)
        let report = try HotswapProcess.run(["render", "--model", Fixtures.url("models/sdxl-tiny").path, "--prompt", "x",
                                             "--steps", "2", "--clip-skip", "3", "--out", dir.appendingPathComponent("no.png").path])
        #expect(report.status != 0 && report.stderr.contains("clip"), "\(report.stderr)")
        // The row's text is stored verbatim in the database file (or its WAL, before a checkpoint).
        let bytes = [db, URL(fileURLWithPath: db.path + "-wal")].compactMap { FileManager.default.contents(atPath: $0.path) }
        #expect(bytes.contains { String(decoding: $0, as: UTF8.self).contains("SDXL") })
    }

    /// `--vae-decoder`: a TAESD decodes the image and the infotext names it (A1111's "VAE" field); one
    /// made for another latent scale is a one-line error and writes nothing.
    @Test func rendersWithATAESDDecoder() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("taesd.png"), bad = dir.appendingPathComponent("bad.png")
        let base = ["render", "--model", Fixtures.url("models/sd1-tiny").path, "--prompt", "a red circle", "--steps", "2",
                    "--seed", "4", "--quiet"]
        let result = try HotswapProcess.run(base + ["--vae-decoder", Fixtures.url("models/taesd-tiny-original/taesd_decoder.safetensors").path,
                                                    "--out", out.path])
        #expect(result.status == 0, "\(result.stderr)")
        let png = try PNGReader.read(url: out)
        #expect(png.text["parameters"]?.contains("VAE: taesd_decoder") == true, "\(png.text)")
        let refused = try HotswapProcess.run(base + ["--vae-decoder", Fixtures.url("models/taesdxl-tiny").path, "--out", bad.path])
        expectOneLineError(refused, mentions: "4x")
        #expect(!FileManager.default.fileExists(atPath: bad.path))
    }

    @Test func badSingleFileInputIsAOneLineError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out.png")
        let truncated = dir.appendingPathComponent("half.safetensors")
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.sd1))
        try data.prefix(data.count / 3).write(to: truncated)
        let cases: [([String], String)] = [
            (["render", "--model", truncated.path, "--prompt", "x", "--out", out.path, "--quiet"], "half.safetensors"),
            (["render", "--model", Self.sd1, "--prediction-type", "sample", "--prompt", "x", "--out", out.path], "--prediction-type sample"),
            (["render", "--model", Fixtures.url("models/sd1-tiny").path, "--prediction-type", "epsilon", "--prompt", "x", "--out", out.path],
             "single-file"),
            (["render", "--model", Fixtures.url("lora/sd1-tiny/kohya.safetensors").path, "--prompt", "x", "--out", out.path], "adapter"),
            (["convert", truncated.path, "--to", dir.appendingPathComponent("never").path], "half.safetensors"),
        ]
        for (arguments, mentions) in cases {
            expectOneLineError(try HotswapProcess.run(arguments), mentions: mentions)
        }
        #expect(!FileManager.default.fileExists(atPath: out.path))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("never").path))
    }
}
