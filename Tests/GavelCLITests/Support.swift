import Foundation

/// The package root, derived from this file's path (Tests/GavelCLITests/Support.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The built `gavel` binary, if `swift build` has made one.
let gavelBinary: URL? = {
    let url = packageRoot.appendingPathComponent(".build/debug/gavel")
    return FileManager.default.isExecutableFile(atPath: url.path) ? url : nil
}()

/// How a `gavel` command run to its end went.
struct GavelRun {
    /// The exit status; `nil` when it did not exit within the time given (it was killed).
    var status: Int32?
    var standardOutput: String
    var standardError: String
    var lines: [String] { standardOutput.split(separator: "\n").map(String.init) }
}

/// Runs `gavel arguments` with `input` on standard input to its exit, waiting up to `seconds`.
func runGavel(_ arguments: [String], input: String = "", seconds: Double = 120) throws -> GavelRun {
    let process = try GavelProcess(arguments, input: input)
    let status = process.exitStatus(within: seconds)
    return GavelRun(status: status, standardOutput: process.standardOutput, standardError: process.standardError)
}
