import Foundation
import GavelCore
import GavelJournal
import Testing

/// A sale paid at 60,500, so that its shipping deadline (2 s) falls at 62,500, after the restart.
private let beforeRestart =
    [
        #"{"type":"open","id":"o1","listing":"L1","seller":"sam","format":"english","start":100,"closes_at":60000,"at":0,"payment_due_ms":1000,"ship_due_ms":2000}"#,
        #"{"type":"bid","id":"b1","listing":"L1","bidder":"ann","amount":1000,"at":10}"#,
        #"{"type":"bid","id":"b2","listing":"L1","bidder":"bob","amount":400,"at":20}"#,
        #"{"type":"confirm_payment","id":"p1","settlement":"L1:1","by":"pay","role":"service","payment_ref":"PAY-1","at":60500}"#,
    ].joined(separator: "\n") + "\n"

private let afterRestart = #"{"type":"advance","at":63000}"# + "\n"

/// The snapshot file's header: magic (8), version (4), then up to the header CRC at byte 100.
private func rewriteSnapshotVersion(_ path: String, to version: UInt32) throws {
    var bytes = try readBytes(path)
    withUnsafeBytes(of: version.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
    withUnsafeBytes(of: CRC32C.checksum(bytes[0..<100]).littleEndian) { bytes.replaceSubrange(100..<104, with: $0) }
    try writeBytes(bytes, to: path)
}

/// Settlements across a restart of `gavel simulate --data-dir`: recovered from the journal, from a snapshot, and
/// past a snapshot of the format from before settlements; a deadline set before the restart fires after it.
@Suite("Settlement recovery", .serialized)
struct SettlementRecoveryTests {
    private func run(_ data: String, _ input: String) throws -> ToolRun {
        let run = try runGavel(["simulate", "--data-dir", data, "--fsync", "none"], input: input)
        #expect(run.status == 0, "\(run.stderr)")
        return run
    }

    private func refundedAfterRestart(_ run: ToolRun) -> Bool {
        run.lines.contains {
            $0.hasPrefix(#"{"type":"settlement","listing":"L1","at":62500,"settlement":"L1:1","state":"refunded""#)
        }
    }

    @Test func aDeadlineSetBeforeARestartFiresAfterItFromTheJournalAndFromASnapshot() throws {
        let temp = try TemporaryDirectory("settle-recovery")
        defer { temp.remove() }
        for fromSnapshot in [false, true] {
            let data = temp.sub(fromSnapshot ? "snap" : "journal")
            _ = try run(data, beforeRestart)
            let snapshots = DataDirectory(data).snapshotFiles()
            #expect(!snapshots.isEmpty, "simulate takes a snapshot as it ends")
            if !fromSnapshot { for snapshot in snapshots { try FileManager.default.removeItem(atPath: snapshot.path) } }
            let recovered = try Recovery.recover(
                DataDirectory(data),
                options: {
                    var o = RecoveryOptions()
                    o.repair = false
                    return o
                }())
            #expect((recovered.snapshot != nil) == fromSnapshot)
            #expect(recovered.engine.settlement("L1:1")?.state == .paid)
            #expect(recovered.engine.settlement("L1:1")?.dueAt == 62_500)
            let after = try run(data, afterRestart)
            #expect(refundedAfterRestart(after), "\(after.stdout)")
        }
    }

    @Test func settlementsMadeInOneMillisecondKeepTheirCreationOrderFromTheJournalAndFromASnapshot() throws {
        let temp = try TemporaryDirectory("settle-order")
        defer { temp.remove() }
        // Two markets whose ids sort against the order they trade in, alternating in one ms.
        var lines: [String] = []
        for listing in ["Zb", "Aa"] {
            lines.append(
                #"{"type":"open","id":"o\#(listing)","listing":"\#(listing)","seller":"sam","format":"market","at":0}"#)
            lines.append(
                #"{"type":"order","id":"s\#(listing)","listing":"\#(listing)","trader":"sue","side":"sell","price":100,"quantity":100}"#
            )
        }
        for i in 0..<20 {
            lines.append(
                #"{"type":"order","id":"b\#(i)","listing":"\#(i % 2 == 0 ? "Zb" : "Aa")","trader":"bob","side":"buy","price":100,"quantity":1,"tif":"ioc","at":500}"#
            )
        }
        for fromSnapshot in [false, true] {
            let data = temp.sub(fromSnapshot ? "snap" : "journal")
            let live = try run(data, lines.joined(separator: "\n") + "\n")
            // The order the run created them in, as its settlement events came out.
            let created = live.lines.compactMap { line -> String? in
                guard line.hasPrefix(#"{"type":"settlement","#), let range = line.range(of: #""settlement":""#)
                else { return nil }
                return String(line[range.upperBound...].prefix { $0 != "\"" })
            }
            #expect(created.count == 20 && created.first == "Zb:1", "not the order of listing ids")
            let snapshots = DataDirectory(data).snapshotFiles()
            if !fromSnapshot { for snapshot in snapshots { try FileManager.default.removeItem(atPath: snapshot.path) } }
            var options = RecoveryOptions()
            options.repair = false
            let recovered = try Recovery.recover(DataDirectory(data), options: options)
            #expect((recovered.snapshot != nil) == fromSnapshot)
            #expect(recovered.engine.settlementsInCreationOrder.map(\.id) == created)
        }
    }

    @Test func aSnapshotFromBeforeSettlementsIsSkippedAndTheJournalReplayed() throws {
        let temp = try TemporaryDirectory("settle-old-snapshot")
        defer { temp.remove() }
        let data = temp.sub("data")
        _ = try run(data, beforeRestart)
        let snapshots = DataDirectory(data).snapshotFiles()
        for snapshot in snapshots { try rewriteSnapshotVersion(snapshot.path, to: 1) }
        var options = RecoveryOptions()
        options.repair = false
        let recovered = try Recovery.recover(DataDirectory(data), options: options)
        #expect(recovered.snapshot == nil, "no snapshot of the old format is used")
        #expect(recovered.rejectedSnapshots.count == snapshots.count)
        #expect(recovered.rejectedSnapshots.allSatisfy { $0.reason.contains("from before settlements") })
        #expect(recovered.engine.settlement("L1:1")?.state == .paid, "the journal's replay made the settlement")
        let verify = try runGavel(["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
        #expect(verify.stdout.contains("from before settlements: recovery skips it"))
        let after = try run(data, afterRestart)
        #expect(after.stderr.contains("skipped snapshot"), "\(after.stderr)")
        #expect(refundedAfterRestart(after))
    }

    @Test func aSnapshotFromBeforeSettlementsThatTheJournalNoLongerReachesPastIsWhereRecoveryStartsAnUpgrade() throws {
        let temp = try TemporaryDirectory("settle-old-only")
        defer { temp.remove() }
        let data = temp.sub("data")
        // Small segments and one kept snapshot: the segments the snapshot covers are removed.
        var lines = [#"{"type":"open","id":"o1","listing":"M","seller":"sam","format":"market","at":0}"#]
        for i in 0..<400 {
            let side = i % 2 == 0 ? "sell" : "buy"
            lines.append(
                #"{"type":"order","id":"q\#(i)","listing":"M","trader":"t\#(i % 5)","side":"\#(side)","price":\#(100 + i % 3),"quantity":1,"at":\#(i)}"#
            )
        }
        let first = try runGavel(
            [
                "simulate", "--data-dir", data, "--fsync", "none", "--segment-bytes", "4096", "--snapshot-every", "100",
                "--keep-snapshots", "1",
            ], input: lines.joined(separator: "\n") + "\n")
        #expect(first.status == 0, "\(first.stderr)")
        let directory = DataDirectory(data)
        guard let segment = directory.segments().first, segment.firstLSN > 1 else {
            Issue.record("the journal still reaches back to lsn 1: \(directory.segments().map(\.firstLSN))")
            return
        }
        for snapshot in directory.snapshotFiles() { try rewriteSnapshotVersion(snapshot.path, to: 1) }
        var options = RecoveryOptions()
        options.repair = false
        let recovered = try Recovery.recover(directory, options: options)
        #expect(recovered.startedBeforeSettlements)
        #expect(recovered.snapshot != nil)
        #expect(recovered.rejectedSnapshots.isEmpty)
        // The same state as a recovery from the same snapshot before it was marked old: nothing is lost.
        for snapshot in directory.snapshotFiles() {
            try rewriteSnapshotVersion(snapshot.path, to: SnapshotFile.version)
        }
        let current = try Recovery.recover(directory, options: options)
        #expect(!current.startedBeforeSettlements)
        #expect(current.engine.fastStateHash() == recovered.engine.fastStateHash())
        #expect(current.lastLSN == recovered.lastLSN)
        for snapshot in directory.snapshotFiles() { try rewriteSnapshotVersion(snapshot.path, to: 1) }
        let verify = try runGavel(["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stdout)")
        #expect(verify.stdout.contains("from before settlements"), "\(verify.stdout)")
        let again = try runGavel(["simulate", "--data-dir", data], input: "")
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("recovery: started from snapshot"), "\(again.stderr)")
        #expect(again.stderr.contains("have no settlements"), "\(again.stderr)")
    }
}
