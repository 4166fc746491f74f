import Foundation
import Testing

/// `gavel dump`, `verify`, `replay` and an offline `gavel snapshot` say so, and exit non-zero, when the directory is
/// not what they can read in full.
@Suite struct JournalToolsCLITests {
    /// A data directory written by `gavel simulate`: an open and `bids` bids, in 4 KiB segments.
    private func simulated(bids: Int, arguments: [String] = []) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-tools-\(UUID())").path
        var lines = [
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":1000000000,"at":0}"#
        ]
        for n in 1...bids {
            lines.append(
                #"{"type":"bid","id":"b\#(n)","listing":"L1","bidder":"u\#(n % 7)","amount":\#(100 + n * 1000),"at":\#(n)}"#
            )
        }
        let run = try runGavel(
            ["simulate", "--data-dir", directory, "--fsync", "none", "--segment-bytes", "4096"] + arguments,
            input: lines.joined(separator: "\n") + "\n")
        #expect(run.status == 0, "\(run.standardError)")
        return directory
    }

    private func segments(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory + "/journal").filter { $0.hasSuffix(".seg") }
            .sorted().map { directory + "/journal/" + $0 }
    }

    @Test func dumpReportsAMissingSegmentAndExitsNonZeroAfterTheEntriesBeforeIt() throws {
        let directory = try simulated(bids: 1500, arguments: ["--snapshot-every", "0"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = try segments(directory)
        #expect(files.count > 3)
        try FileManager.default.removeItem(atPath: files[1])
        let dump = try runGavel(["dump", "--data-dir", directory])
        #expect(dump.status == 1)
        #expect(dump.standardError.contains("a segment is missing or out of order"), "\(dump.standardError)")
        #expect(dump.standardError.contains(files[2]), "\(dump.standardError)")
        let lsns = dump.lines.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["lsn"] as? Int
        }
        #expect(!lsns.isEmpty)
        #expect(lsns == Array(1...lsns.count), "only the entries before the gap, in order")
    }

    @Test func dumpReportsSwappedSegmentsInsteadOfPrintingThemOutOfOrder() throws {
        let directory = try simulated(bids: 1500, arguments: ["--snapshot-every", "0"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = try segments(directory)
        #expect(files.count > 3)
        let manager = FileManager.default
        try manager.moveItem(atPath: files[1], toPath: files[1] + ".t")
        try manager.moveItem(atPath: files[2], toPath: files[1])
        try manager.moveItem(atPath: files[1] + ".t", toPath: files[2])
        let dump = try runGavel(["dump", "--data-dir", directory])
        #expect(dump.status == 1)
        #expect(dump.standardError.contains("named for lsn"), "\(dump.standardError)")
    }

    @Test func theReadOnlyToolsRefuseAPathThatIsNotADataDirectory() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-none-\(UUID())").path
        for tool in ["verify", "replay", "dump"] {
            let run = try runGavel([tool, "--data-dir", missing])
            #expect(run.status != 0, "\(tool)")
            #expect(
                (run.standardError + run.standardOutput).contains("there is no data directory at \(missing)"),
                "\(tool): \(run.standardError) \(run.standardOutput)")
        }
        let file = missing + ".txt"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        defer { try? FileManager.default.removeItem(atPath: file) }
        for tool in ["verify", "replay", "dump"] {
            let run = try runGavel([tool, "--data-dir", file])
            #expect(run.status != 0, "\(tool)")
            #expect((run.standardError + run.standardOutput).contains("is not a directory"), "\(tool)")
        }
    }

    @Test func anOfflineSnapshotOfACleanlyStoppedDirectoryIsWrittenWithoutAFalseChainAlarm() throws {
        // The shutdown snapshot covers the whole journal; the offline snapshot recovers to that same lsn.
        let directory = try simulated(bids: 1500)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let snapshot = try runGavel(["snapshot", "--data-dir", directory])
        #expect(snapshot.status == 0, "\(snapshot.standardError)")
        #expect(!snapshot.standardError.contains("SNAPSHOT FAILED"), "\(snapshot.standardError)")
        #expect(snapshot.standardOutput.contains("snapshot: "), "\(snapshot.standardOutput)")
        let verify = try runGavel(["verify", "--data-dir", directory])
        #expect(verify.status == 0, "\(verify.standardOutput)")
    }
}
