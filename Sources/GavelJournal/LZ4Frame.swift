import CLZ4

/// LZ4 frame format (with block and content checksums) through liblz4, so that `lz4 -d` reads what Gavel writes.
public enum LZ4Frame {
    /// The magic number that starts every LZ4 frame (little-endian on disk).
    public static let magic: UInt32 = 0x184D_2204

    /// Appends `input` as one complete LZ4 frame to `output`.
    public static func compress(_ input: [UInt8], appendingTo output: inout [UInt8]) {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max4MB
        preferences.frameInfo.blockMode = LZ4F_blockLinked
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
        preferences.frameInfo.contentSize = UInt64(input.count)
        preferences.compressionLevel = 0
        let bound = LZ4F_compressFrameBound(input.count, &preferences)
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: bound))
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { src in
                LZ4F_compressFrame(out.baseAddress! + start, bound, src.baseAddress, input.count, &preferences)
            }
        }
        precondition(
            LZ4F_isError(written) == 0, "LZ4F_compressFrame failed: \(String(cString: LZ4F_getErrorName(written)))")
        output.removeLast(bound - written)
    }

    /// How decoding one frame went.
    public enum DecodeError: Error, Equatable {
        /// The bytes end before the frame does (a torn write).
        case truncated
        /// The frame is damaged: a bad header, block, or checksum.
        case corrupt(String)
    }

    /// Decodes the LZ4 frame that starts at `offset` in `bytes`.
    ///
    /// - Returns: the decompressed content and the number of bytes the frame occupies.
    public static func decode(_ bytes: [UInt8], at offset: Int, maxContent: Int = 1 << 30) throws(DecodeError) -> (
        content: [UInt8], length: Int
    ) {
        var context: OpaquePointer?
        let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(created) == 0, let context else { throw .corrupt("cannot create an LZ4 context") }
        defer { LZ4F_freeDecompressionContext(context) }
        var content: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var position = offset
        while true {
            var sourceSize = bytes.count - position
            var destinationSize = chunk.count
            let hint = bytes.withUnsafeBytes { src in
                chunk.withUnsafeMutableBytes { dst in
                    LZ4F_decompress(
                        context, dst.baseAddress, &destinationSize, src.baseAddress! + position, &sourceSize, nil)
                }
            }
            if LZ4F_isError(hint) != 0 {
                throw .corrupt(String(cString: LZ4F_getErrorName(hint)))
            }
            position += sourceSize
            content.append(contentsOf: chunk[0..<destinationSize])
            if content.count > maxContent { throw .corrupt("frame content exceeds \(maxContent) bytes") }
            if hint == 0 { return (content, position - offset) }
            if position >= bytes.count && destinationSize == 0 { throw .truncated }
        }
    }
}

/// LZ4 skippable frames: `magic | u32 length | payload`, ignored by `lz4 -d`. Gavel keeps segment headers in them.
public enum SkippableFrame {
    public static let magic: UInt32 = 0x184D_2A50

    public static func append(_ payload: [UInt8], to output: inout [UInt8]) {
        withUnsafeBytes(of: magic.littleEndian) { output.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { output.append(contentsOf: $0) }
        output.append(contentsOf: payload)
    }
}

extension Array where Element == UInt8 {
    /// The little-endian `UInt32` at `offset`, if there are four bytes there.
    func uint32(at offset: Int) -> UInt32? {
        guard offset >= 0, offset + 4 <= count else { return nil }
        return UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16
            | UInt32(self[offset + 3]) << 24
    }
}
