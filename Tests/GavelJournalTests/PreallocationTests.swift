import CGavelShims
import GavelCore
@_spi(Manual) import GavelEngine
import GavelJournal
import Glibc
import Testing

/// The journal reserves a segment's size when it starts it, so appending a frame never changes the file's size
/// (a sync writes the frame and no inode update). These tests check that readers take the zeros after the last
/// frame as the end of the frames, and only that: zeros over a frame with frames after it are damage, and a frame
/// cut short before the zeros is a torn tail.
@Suite struct PreallocationTests {
    private static let segmentBytes = 64 << 10

    private func configuration(fsync: FsyncPolicy = .none) -> JournalConfiguration {
        var c = JournalConfiguration()
        c.segmentBytes = Self.segmentBytes
        c.fsync = fsync
        return c
    }

    /// Whether the file system under `path` can reserve space (tmpfs and ext4 can; some cannot, and then segments
    /// simply grow as they are written).
    private func canPreallocate(in path: String) -> Bool {
        let probe = path + "/probe"
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer {
            close(fd)
            unlink(probe)
        }
        return fd >= 0 && gavel_preallocate(fd, 4096) == 0
    }

    /// The (offset, length) of every frame of the segment at `path`, and the offset where its frames end.
    private func frames(of path: String) throws -> (frames: [(offset: Int, length: Int)], end: Int) {
        var reader = try SegmentReader(bytes: try readBytes(path))
        var frames: [(offset: Int, length: Int)] = []
        while let batch = try reader.next() { frames.append((batch.offset, batch.length)) }
        return (frames, reader.offset)
    }

    /// The last segment of `directory` as the journal leaves it open: zeros up to the reserved size (added here
    /// where the file system could not reserve them, so the tests read the same bytes everywhere).
    private func lastSegmentReserved(_ directory: DataDirectory) throws -> String {
        let path = try #require(directory.segments().last).path
        var bytes = try readBytes(path)
        if bytes.count < Self.segmentBytes {
            bytes += [UInt8](repeating: 0, count: Self.segmentBytes - bytes.count)
            try writeBytes(bytes, to: path)
        }
        return path
    }

    /// Runs `count` commands of a fixed workload, each settled on its own (one frame each), and leaves the writer
    /// open: what a process killed at that moment leaves on disk.
    private func openRun(_ path: String, count: Int, fsync: FsyncPolicy = .none) throws -> JournaledWriter {
        let run = try JournaledWriter(path, journal: configuration(fsync: fsync))
        var workload = Workload(seed: 17)
        for _ in 0..<count {
            let (command, at) = workload.next()
            run.submit(command, at: at)
            run.settle()
        }
        return run
    }

    @Test func anOpenSegmentHoldsItsReservedSizeAndRolledOrClosedOnesEndWithTheirLastFrame() throws {
        let temp = try TemporaryDirectory("prealloc-sizes")
        defer { temp.remove() }
        let run = try openRun(temp.sub("dd"), count: 40)
        let directory = DataDirectory(temp.sub("dd"))
        let live = try #require(directory.segments().last)
        let (liveFrames, liveEnd) = try frames(of: live.path)
        #expect(liveFrames.count >= 40)
        if canPreallocate(in: temp.path) {
            #expect(Files.size(live.path) == Self.segmentBytes, "the open segment is reserved whole")
            #expect(liveEnd < Self.segmentBytes)
        }
        // Read while the journal is open, as `gavel verify` or a crash's recovery would: the zeros are the end.
        var readOnly = RecoveryOptions()
        readOnly.repair = false
        let report = try Recovery.recover(directory, options: readOnly)
        #expect(report.truncation == nil, "reserved space is not a torn tail: \(String(describing: report.truncation))")
        #expect(report.activeSegment?.size == liveEnd)
        #expect(report.engine.stateHash() == run.engine.stateHash())
        #expect(Verification.run(directory).problems == [])

        // Enough more to roll several times, however well the frames compress (a busy machine lets the journal put
        // more batches in a frame): every rolled segment ends with its last frame.
        var workload = Workload(seed: 99, prefix: "more-")
        run.feed(&workload, 6_000)
        let hash = run.engine.stateHash()
        run.finish()
        let segments = directory.segments()
        #expect(segments.count > 2, "64 KiB segments roll: \(segments.count)")
        for segment in segments {
            let (_, end) = try frames(of: segment.path)
            #expect(Files.size(segment.path) == end, "\(segment.path) ends with its last frame")
        }
        #expect(try Recovery.recover(directory).engine.stateHash() == hash)
        #expect(Verification.run(directory).problems == [])
    }

    @Test func aCrashWithReservedSpaceLeftRecoversEveryEntryAndTheNextRunAppendsAfterThem() throws {
        let temp = try TemporaryDirectory("prealloc-crash")
        defer { temp.remove() }
        let run = try openRun(temp.sub("dd"), count: 60, fsync: .always)
        let hash = run.engine.stateHash()
        // The files as a kill -9 leaves them: copied while the journal is open.
        try copyTree(temp.sub("dd"), to: temp.sub("crashed"))
        run.finish()
        _ = try lastSegmentReserved(DataDirectory(temp.sub("crashed")))

        let restarted = try JournaledWriter(temp.sub("crashed"), journal: configuration(fsync: .always))
        #expect(restarted.recovery.truncation == nil)
        #expect(restarted.engine.stateHash() == hash)
        var workload = Workload(seed: 3, prefix: "after-")
        restarted.feed(&workload, 300)
        let after = restarted.engine.stateHash()
        restarted.finish()
        let directory = DataDirectory(temp.sub("crashed"))
        #expect(try Recovery.recover(directory).engine.stateHash() == after)
        #expect(Verification.run(directory).problems == [])
        #expect(replay(try journalRecords(directory)).engine.stateHash() == after)
    }

    @Test func zerosOverAFrameWithFramesAfterThemAreCorruptionNotTheEnd() throws {
        let temp = try TemporaryDirectory("prealloc-zeroed")
        defer { temp.remove() }
        let run = try openRun(temp.sub("dd"), count: 30)
        try copyTree(temp.sub("dd"), to: temp.sub("damaged"))
        run.finish()
        let directory = DataDirectory(temp.sub("damaged"))
        let segment = try lastSegmentReserved(directory)
        let (list, _) = try frames(of: segment)
        try #require(list.count > 5)
        var bytes = try readBytes(segment)
        let victim = list[list.count / 2]
        for index in victim.offset..<(victim.offset + victim.length) { bytes[index] = 0 }
        try writeBytes(bytes, to: segment)

        let error = #expect(throws: CorruptionError.self) { try Recovery.recover(directory) }
        // The remedy names the damaged directory itself, ready to copy.
        #expect(error?.description.contains("run `gavel verify --data-dir \(temp.sub("damaged"))` for") == true)
        let problems = Verification.run(directory).problems
        #expect(
            problems.contains { $0.contains("at byte \(victim.offset)") && $0.contains("corruption") }, "\(problems)")
    }

    @Test func aFrameCutShortBeforeTheZerosOrStrayBytesInThemAreATornTailCutOff() throws {
        let temp = try TemporaryDirectory("prealloc-torn")
        defer { temp.remove() }
        let run = try openRun(temp.sub("dd"), count: 25)
        let hash = run.engine.stateHash()
        try copyTree(temp.sub("dd"), to: temp.sub("cut"))
        try copyTree(temp.sub("dd"), to: temp.sub("stray"))
        run.finish()

        // Half of a frame written where the next one would start, zeros after it: a write the crash cut short.
        let cut = DataDirectory(temp.sub("cut"))
        let segment = try lastSegmentReserved(cut)
        let (list, end) = try frames(of: segment)
        var bytes = try readBytes(segment)
        let last = try #require(list.last)
        try #require(end + last.length < bytes.count, "room for a frame in the reserved space")
        for index in 0..<(last.length / 2) { bytes[end + index] = bytes[last.offset + index] }
        try writeBytes(bytes, to: segment)
        let report = try Recovery.recover(cut)
        #expect(report.truncation?.offset == end)
        #expect(report.truncation?.reason.hasPrefix("torn tail") == true)
        #expect(report.engine.stateHash() == hash)
        #expect(Files.size(segment) == end)

        // One stray byte deep in the reserved space (no frame there): also cut off, nothing acknowledged is lost.
        let stray = DataDirectory(temp.sub("stray"))
        let straySegment = try lastSegmentReserved(stray)
        var strayBytes = try readBytes(straySegment)
        strayBytes[strayBytes.count - 3] = 0xFF
        try writeBytes(strayBytes, to: straySegment)
        let strayReport = try Recovery.recover(stray)
        #expect(strayReport.truncation?.offset == end)
        #expect(strayReport.engine.stateHash() == hash)
    }

    @Test func aLastSegmentCreatedAndReservedButWithoutItsHeaderIsATornTailRemovedNotCorruption() throws {
        let temp = try TemporaryDirectory("prealloc-headerless")
        defer { temp.remove() }
        let run = try openRun(temp.sub("dd"), count: 25)
        let hash = run.engine.stateHash()
        try copyTree(temp.sub("dd"), to: temp.sub("zeros"))
        try copyTree(temp.sub("dd"), to: temp.sub("damaged"))
        run.finish()

        // What a kill between the segment's creation (its size reserved) and its header's write leaves: the next
        // segment, named for the lsn after the last one written.
        let zeros = DataDirectory(temp.sub("zeros"))
        var reader = try SegmentReader(bytes: try readBytes(try #require(zeros.segments().last).path))
        while try reader.next() != nil {}
        let next = reader.nextLSN
        let headerless = zeros.journal + "/" + DataDirectory.segmentName(firstLSN: next)
        try writeBytes([UInt8](repeating: 0, count: Self.segmentBytes), to: headerless)
        let report = try Recovery.recover(zeros)
        #expect(report.engine.stateHash() == hash)
        #expect(report.truncation?.file == headerless)
        #expect(report.truncation?.reason.contains("never written") == true)
        #expect(access(headerless, F_OK) != 0, "the headerless segment is removed")
        // The journal goes on from there: a writer on the recovered directory appends and recovers again.
        let again = try JournaledWriter(temp.sub("zeros"), journal: configuration())
        again.finish()
        #expect(try Recovery.recover(zeros).engine.stateHash() == hash)

        // The same file with one byte of a header that is not zeros: damage, refused.
        let damaged = DataDirectory(temp.sub("damaged"))
        var bytes = [UInt8](repeating: 0, count: Self.segmentBytes)
        bytes[5] = 0x2A
        try writeBytes(bytes, to: damaged.journal + "/" + DataDirectory.segmentName(firstLSN: next))
        #expect(throws: CorruptionError.self) { try Recovery.recover(damaged) }
    }

    /// Where the next hole (space reserved but never written) starts in `path` from `offset`, or `nil` where the
    /// file system does not report reserved space as holes (checked on a fresh reserved file).
    private func nextHole(_ path: String, from offset: Int, probeIn directory: String) -> Int? {
        // Linux's SEEK_HOLE (not imported into Swift).
        let seekHole: Int32 = 4
        let probe = directory + "/hole-probe"
        let probeFD = open(probe, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer {
            close(probeFD)
            unlink(probe)
        }
        guard probeFD >= 0, gavel_preallocate(probeFD, 65536) == 0, lseek(probeFD, 0, seekHole) == 0 else { return nil }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let hole = lseek(fd, off_t(offset), seekHole)
        return fd >= 0 && hole >= 0 ? Int(hole) : nil
    }

    /// Runs a fixed workload into `path` with zeros written `zeroAhead` bytes at a time, waits until the journal
    /// thread is past the last frame's turn, and returns the open run, the open segment, where its frames end and
    /// where its first hole starts (`nil`: not reported). The hole is looked for before the segment is read: pages
    /// of reserved space read into the page cache count as data.
    private func zeroAheadRun(
        _ path: String, zeroAhead: Int, count: Int
    ) throws -> (run: JournaledWriter, live: String, end: Int, hole: Int?) {
        var c = configuration(fsync: .always)
        c.zeroAheadBytes = zeroAhead
        let run = try JournaledWriter(path, journal: c)
        var workload = Workload(seed: 23)
        run.feed(&workload, count, settleEvery: 3)
        // The second flush is taken in a later pass of the journal thread than the last frame: the pass that wrote
        // the frame has written its zeros.
        run.journal.flush()
        run.journal.flush()
        let live = try #require(run.directory.segments().last).path
        let hole = nextHole(live, from: 0, probeIn: path)
        return (run, live, try frames(of: live).end, hole)
    }

    @Test func theJournalKeepsZerosWrittenAheadOfItsLastFrameAndNeverOverAFrameOrPastTheSegment() throws {
        let temp = try TemporaryDirectory("prealloc-zero-ahead")
        defer { temp.remove() }
        // A step smaller than a few frames: the frames use the zeros up again and again, and segments roll.
        let step = 4096
        let (run, live, end, hole) = try zeroAheadRun(temp.sub("dd"), zeroAhead: step, count: 3_000)
        let zeroed = Int(run.journal.stats.zeroedBytes.load(ordering: .relaxed))
        let bytes = try readBytes(live)
        #expect(bytes.count <= Self.segmentBytes, "zeros never pass the segment's size")
        #expect(SegmentReader.onlyZeros(bytes, from: end) || bytes.count == end, "after the frames, zeros only")
        if let hole {
            #expect(
                hole >= min(end + step, Self.segmentBytes),
                "the \(step) bytes after the last frame (\(end)) are written, the reserved space starts at \(hole)")
        }
        let hash = run.engine.stateHash()
        run.finish()
        let directory = DataDirectory(temp.sub("dd"))
        #expect(directory.segments().count > 2, "64 KiB segments roll")
        #expect(zeroed >= directory.segments().count * step / 2, "zeros written in every segment: \(zeroed) bytes")
        // Every frame as written: the zeros went only where no frame was.
        #expect(try Recovery.recover(directory).engine.stateHash() == hash)
        #expect(Verification.run(directory).problems == [])
        #expect(replay(try journalRecords(directory)).engine.stateHash() == hash)

        // Without zeros ahead the space after the last frame stays reserved and unwritten (the file system then
        // records each block a frame reaches as written, in the frame's own sync).
        let (plain, _, plainEnd, plainHole) = try zeroAheadRun(temp.sub("plain"), zeroAhead: 0, count: 200)
        defer { plain.finish() }
        #expect(plain.journal.stats.zeroedBytes.load(ordering: .relaxed) == 0)
        if let hole = plainHole {
            #expect(hole < plainEnd + 4096, "reserved space starts at the page after the frames (\(plainEnd)): \(hole)")
        }
    }

    @Test func onlyZerosIsTrueExactlyWhenEveryByteFromTheStartIsZero() {
        for count in 1..<40 {
            for start in 0..<count {
                var bytes = [UInt8](repeating: 0, count: count)
                #expect(SegmentReader.onlyZeros(bytes, from: start))
                for marked in start..<count {
                    bytes[marked] = 1
                    #expect(!SegmentReader.onlyZeros(bytes, from: start), "count \(count) start \(start) at \(marked)")
                    bytes[marked] = 0
                }
                if start > 0 {
                    bytes[start - 1] = 7
                    #expect(SegmentReader.onlyZeros(bytes, from: start), "a byte before the start does not count")
                }
            }
        }
        #expect(!SegmentReader.onlyZeros([0, 0], from: 2), "nothing left is not reserved space")
    }
}
