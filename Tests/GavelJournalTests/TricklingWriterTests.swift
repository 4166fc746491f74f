import Foundation
import GavelCore
import GavelJournal
import Testing

@Suite("Files written a piece at a time")
struct TricklingWriterTests {
    /// Pieces of every size around the writeback boundaries (1 byte to most of a MiB, the empty piece too), then a
    /// header written again at the start: the file holds exactly those bytes, and no temporary file is left.
    @Test(arguments: [UInt64(1), 2, 3])
    func aFileWrittenInPiecesOfAnySizeHoldsExactlyTheirBytes(seed: UInt64) throws {
        let temp = try TemporaryDirectory("trickling-\(seed)")
        defer { temp.remove() }
        var rng = SplitMix64(seed: seed)
        var expected: [UInt8] = []
        var pieces: [[UInt8]] = []
        while expected.count < 3 << 20 {
            let size = rng.chance(20) ? 0 : rng.chance(50) ? rng.int(1...4_096) : rng.int(4_096...(700 << 10))
            let salt = Int(truncatingIfNeeded: rng.next() & 0xFFFF)
            let piece = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8 &+ salt) }
            pieces.append(piece)
            expected += piece
        }
        let header: [UInt8] = Array("header!".utf8)
        expected.replaceSubrange(0..<header.count, with: header)
        let path = temp.sub("file")
        try Files.writeAtomically(to: path, directory: temp.path) { (sink: inout TricklingWriter) throws(FileError) in
            for piece in pieces { try sink.write(piece) }
            try sink.overwrite(header, at: 0)
        }
        #expect(try readBytes(path) == expected)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"), "the temporary file is gone")
    }
}

@Suite("Files read whole")
struct FileReadTests {
    /// A FIFO with no writer, a directory or a device where a file belongs is refused at once, saying so: a read
    /// would block the caller forever or fail with an error that names neither.
    @Test func onlyARegularFileIsReadAndAnythingElseIsRefusedWithoutBlocking() throws {
        let temp = try TemporaryDirectory("file-read")
        defer { temp.remove() }
        let fifo = temp.sub("fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        try FileManager.default.createDirectory(atPath: temp.sub("folder"), withIntermediateDirectories: false)
        for path in [fifo, temp.sub("folder"), "/dev/zero"] {
            #expect {
                _ = try Files.readAll(path)
            } throws: { error in
                "\(error)" == "read \(path): not a regular file"
            }
        }
        let file = temp.sub("file")
        #expect(FileManager.default.createFile(atPath: file, contents: Data("abc".utf8)))
        #expect(try Files.readAll(file) == Array("abc".utf8))
    }
}
