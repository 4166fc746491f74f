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
}
