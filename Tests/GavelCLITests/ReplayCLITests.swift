import Foundation
import Testing

/// `gavel replay` reports what the state holds besides listings: the remembered request ids and the scheduled timers.
@Suite struct ReplayCLITests {
    @Test func ordersCancelledLongBeforeTheyExpireLeaveNoTimerInTheReplayedState() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-replay-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // 200 orders expiring in 2096, all but the last cancelled.
        var lines = [#"{"type":"open","id":"o","listing":"M","seller":"sam","format":"market","at":0}"#]
        for n in 0..<200 {
            lines.append(
                #"{"type":"order","id":"q\#(n)","listing":"M","trader":"mo","side":"buy","price":\#(100 + n),"quantity":1,"tif":"gtc","expires_at":4000000000000,"at":\#(n + 1)}"#
            )
        }
        for n in 0..<199 {
            lines.append(#"{"type":"cancel","id":"c\#(n)","listing":"M","trader":"mo","order":"q\#(n)","at":300}"#)
        }
        let simulate = try runGavel(["simulate", "--data-dir", directory], input: lines.joined(separator: "\n") + "\n")
        #expect(simulate.status == 0)
        let replay = try runGavel(["replay", "--data-dir", directory, "--json"])
        #expect(replay.status == 0)
        guard let line = replay.lines.first(where: { $0.hasPrefix("{") }),
            let report = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            Issue.record("no JSON report: \(replay.lines)")
            return
        }
        #expect(report["timers"] as? Int == 1, "only the resting order's expiry: \(line)")
        #expect(report["remembered_request_ids"] as? Int == 400, "\(line)")
        let text = try runGavel(["replay", "--data-dir", directory])
        #expect(text.lines.contains("timers:       1 scheduled"), "\(text.lines)")
        #expect(text.lines.contains("request ids:  400 remembered"), "\(text.lines)")
    }

    @Test func journalBytesCountTheFramesNotTheSpaceReservedAfterThem() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-replay-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let lines = [
            #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0}"#,
            #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
        ]
        #expect(
            try runGavel(["simulate", "--data-dir", directory], input: lines.joined(separator: "\n") + "\n").status == 0
        )
        let segment =
            directory + "/journal/"
            + (try #require(
                try FileManager.default.contentsOfDirectory(atPath: directory + "/journal").first {
                    $0.hasSuffix(".seg")
                }))
        let frames = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        // What a running server's segment (or one a crash left) looks like: zeros reserved after the frames.
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.truncate(atOffset: 1 << 20)
        try handle.close()
        let replay = try runGavel(["replay", "--data-dir", directory, "--from-start", "--json"])
        #expect(replay.status == 0, "\(replay.standardError)")
        let line = try #require(replay.lines.first { $0.hasPrefix("{") })
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(report["journal_bytes"] as? Int == frames, "\(line)")
        #expect(report["replayed"] as? Int == 2, "\(line)")
    }

    /// A data directory written by `gavel simulate`: an open market listing and `orders` orders, in 4 KiB segments,
    /// a snapshot every 100 entries, in `runs` runs of `gavel simulate` one after another. Each run's stop writes a
    /// snapshot and runs retention after it, whether or not the checkpointer kept up with the snapshots asked for
    /// during the run (on a busy machine it writes only the latest of those it is behind on).
    private func simulated(orders: Int, runs: Int = 1, arguments: [String] = []) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gavel-replay-\(UUID())").path
        var lines = [#"{"type":"open","id":"o1","listing":"M1","seller":"sam","format":"market","at":1}"#]
        for n in 0..<orders {
            lines.append(
                #"{"type":"order","id":"r\#(n)","listing":"M1","trader":"ann","side":"buy","price":100,"quantity":1,"tif":"ioc","at":\#(n + 2)}"#
            )
        }
        let perRun = (lines.count + runs - 1) / runs
        for first in stride(from: 0, to: lines.count, by: perRun) {
            let part = lines[first..<min(first + perRun, lines.count)]
            let run = try runGavel(
                [
                    "simulate", "--data-dir", directory, "--fsync", "none", "--segment-bytes", "4096",
                    "--snapshot-every", "100",
                ]
                    + arguments, input: part.joined(separator: "\n") + "\n")
            #expect(run.status == 0, "\(run.standardError)")
        }
        return directory
    }

    /// The lsns in the names of the files of `folder` ending in `suffix`, in order.
    private func lsns(_ folder: String, _ suffix: String) throws -> [UInt64] {
        try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(suffix) }
            .compactMap { UInt64($0.dropLast(suffix.count)) }.sorted()
    }

    @Test func aStateBeforeTheOldestSnapshotOfARetainedDirectoryIsRefusedAsSuchNotAsCorruption() throws {
        // Retention (two snapshots kept) removed the segments the older snapshot covers: the journal starts after
        // lsn 1 and nothing is damaged.
        let directory = try simulated(orders: 1500, runs: 3)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let start = try #require(try lsns(directory + "/journal", ".seg").first)
        try #require(start > 1, "retention removed no segment")
        let oldest = try #require(try lsns(directory + "/snapshots", ".snap").first { $0 + 1 >= start })
        #expect(try runGavel(["verify", "--data-dir", directory]).status == 0)
        for arguments in [["--to-lsn", "1"], ["--to-lsn", "\(oldest - 1)"], ["--from-start"]] {
            let replay = try runGavel(["replay", "--data-dir", directory] + arguments)
            #expect(replay.status == 64, "\(arguments): \(replay.standardError)")
            #expect(replay.standardOutput.isEmpty, "\(arguments): \(replay.standardOutput)")
            let message = replay.standardError
            #expect(!message.contains("corruption"), "\(arguments): \(message)")
            #expect(!message.contains("--truncate-after-corruption"), "\(arguments): \(message)")
            #expect(message.contains("the snapshot at lsn \(oldest) ("), "\(arguments): \(message)")
            #expect(message.contains("the journal starts at lsn \(start)"), "\(arguments): \(message)")
            #expect(message.contains("retention"), "\(arguments): \(message)")
            #expect(message.components(separatedBy: "gavel replay:").count == 2, "said once: \(message)")
            if arguments[0] == "--to-lsn" {
                #expect(
                    message.contains("lsn \(arguments[1]) is before the oldest state this directory holds"),
                    "\(message)")
                #expect(message.contains("Replay to lsn \(oldest) or later"), "\(message)")
            }
        }
        let past = try runGavel(["replay", "--data-dir", directory, "--to-lsn", "99999999"])
        #expect(past.status == 0, "\(past.standardError)")
        #expect(
            past.standardError.contains("before --to-lsn 99999999: the state shown is at its end"),
            "\(past.standardError)")
        let reachable = try runGavel(["replay", "--data-dir", directory, "--to-lsn", "\(oldest)"])
        #expect(reachable.status == 0, "\(reachable.standardError)")
        #expect(reachable.lines.contains("lsn:          \(oldest)"), "\(reachable.lines)")
    }

    @Test func aJournalStartRemovedByHandWithNoSnapshotCoveringItIsStillCorruption() throws {
        // Every snapshot kept; then the first segments are removed by hand, and the snapshots from the journal's new
        // start on: only a snapshot before it is left, so nothing covers the entries removed.
        let directory = try simulated(orders: 1500, arguments: ["--keep-snapshots", "1000"])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let segments = try lsns(directory + "/journal", ".seg")
        try #require(segments.count > 4 && segments[0] == 1)
        // The journal's new start: the first segment after the oldest snapshot (a busy checkpointer skips some
        // snapshot points, so which lsns have one varies from run to run).
        let snapshots = try lsns(directory + "/snapshots", ".snap")
        let oldest = try #require(snapshots.first, "a snapshot")
        let start = try #require(segments.dropFirst().first { $0 > oldest + 1 }, "a segment after the oldest snapshot")
        let manager = FileManager.default
        for lsn in segments where lsn < start {
            try manager.removeItem(atPath: directory + "/journal/" + String(format: "%020llu.seg", lsn))
        }
        for lsn in snapshots where lsn + 1 >= start {
            try manager.removeItem(atPath: directory + "/snapshots/" + String(format: "%020llu.snap", lsn))
        }
        for arguments in [[], ["--to-lsn", "1"], ["--from-start"]] {
            let replay = try runGavel(["replay", "--data-dir", directory] + arguments)
            #expect(replay.status == 2, "\(arguments): \(replay.standardError)")
            #expect(
                replay.standardError.contains(
                    "journal corruption in \(directory)/journal/\(String(format: "%020llu", start)).seg at byte 0: the journal starts at lsn \(start) and no valid snapshot covers what came before"
                ), "\(arguments): \(replay.standardError)")
            #expect(!replay.standardError.contains("oldest state"), "\(arguments): \(replay.standardError)")
        }
    }
}
