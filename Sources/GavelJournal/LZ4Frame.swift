import CLZ4

/// LZ4 frame format (with block and content checksums) through liblz4, so that `lz4 -d` reads what Gavel writes.
public enum LZ4Frame {
    /// The magic number that starts every LZ4 frame (little-endian on disk).
    public static let magic: UInt32 = 0x184D_2204

    /// The frame settings Gavel writes: 4 MiB linked blocks, block and content checksums, the content size.
    static func preferences(contentSize: Int) -> LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        preferences.frameInfo.blockSizeID = LZ4F_max4MB
        preferences.frameInfo.blockMode = LZ4F_blockLinked
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        preferences.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
        preferences.frameInfo.contentSize = UInt64(contentSize)
        preferences.compressionLevel = 0
        return preferences
    }

    /// One LZ4 frame made a piece at a time from input that arrives a piece at a time: ``begin(emit:)``, any number
    /// of ``update(_:emit:)``, then ``end(emit:)``. Each call hands what it compressed to `emit`, in a buffer reused
    /// by the next call. A frame whose size is not known when it begins (`contentSize` 0) does not declare it; the
    /// reader then needs the size from elsewhere (a snapshot's header has it) to decode it in one piece.
    public final class Compressor {
        private static let block = 4 << 20
        private var preferences: LZ4F_preferences_t
        private let context: OpaquePointer
        private let out: UnsafeMutableRawBufferPointer

        public init(contentSize: Int) {
            preferences = LZ4Frame.preferences(contentSize: contentSize)
            var context: OpaquePointer?
            let created = LZ4F_createCompressionContext(&context, UInt32(LZ4F_VERSION))
            precondition(LZ4F_isError(created) == 0 && context != nil, "cannot create an LZ4 compression context")
            self.context = context!
            let capacity = max(Int(LZ4F_HEADER_SIZE_MAX), LZ4F_compressBound(Self.block, &preferences))
            out = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        }

        deinit {
            LZ4F_freeCompressionContext(context)
            out.deallocate()
        }

        private func checked(_ n: Int, _ step: String) -> Int {
            precondition(LZ4F_isError(n) == 0, "LZ4F_\(step) failed: \(String(cString: LZ4F_getErrorName(n)))")
            return n
        }

        /// Starts the frame: its header.
        public func begin<E: Error>(emit: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
            let header = checked(
                LZ4F_compressBegin(context, out.baseAddress, out.count, &preferences), "compressBegin")
            try emit(UnsafeRawBufferPointer(rebasing: out[0..<header]))
        }

        /// Adds `input` to the frame, a block at most at a time.
        public func update<E: Error>(
            _ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws(E) -> Void
        ) throws(E) {
            var done = 0
            while done < input.count {
                let size = min(Self.block, input.count - done)
                let n = checked(
                    LZ4F_compressUpdate(context, out.baseAddress, out.count, input.baseAddress! + done, size, nil),
                    "compressUpdate")
                if n > 0 { try emit(UnsafeRawBufferPointer(rebasing: out[0..<n])) }
                done += size
            }
        }

        /// Ends the frame: what is left of its last block, its end mark and its content checksum.
        public func end<E: Error>(emit: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
            let end = checked(LZ4F_compressEnd(context, out.baseAddress, out.count, nil), "compressEnd")
            try emit(UnsafeRawBufferPointer(rebasing: out[0..<end]))
        }
    }

    /// Appends `input` as one complete LZ4 frame to `output`.
    public static func compress(_ input: [UInt8], appendingTo output: inout [UInt8]) {
        var preferences = preferences(contentSize: input.count)
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
    public static func decode(
        _ bytes: [UInt8], at offset: Int, maxContent: Int = 1 << 30, expectedContent: Int? = nil
    ) throws(DecodeError) -> (content: [UInt8], length: Int) {
        guard let decoder = Decoder() else { throw .corrupt("cannot create an LZ4 context") }
        return try decoder.decode(bytes, at: offset, maxContent: maxContent, expectedContent: expectedContent)
    }

    /// One liblz4 decompression context, and the block buffers it allocates, reused for many frames: a reader of a
    /// segment decodes thousands of frames, and a fresh context would allocate its multi-MiB buffers for each.
    public final class Decoder {
        private let context: OpaquePointer

        public init?() {
            var context: OpaquePointer?
            let created = LZ4F_createDecompressionContext(&context, UInt32(LZ4F_VERSION))
            guard LZ4F_isError(created) == 0, let context else { return nil }
            self.context = context
        }

        deinit { LZ4F_freeDecompressionContext(context) }

        /// Decodes the LZ4 frame that starts at `offset` in `bytes` (see ``LZ4Frame/decode(_:at:maxContent:)``).
        /// A frame that declares its content size (Gavel's do), or whose size the caller knows (`expectedContent`:
        /// a snapshot's header has it), is decompressed straight into an array of that size.
        public func decode(
            _ bytes: [UInt8], at offset: Int, maxContent: Int = 1 << 30, expectedContent: Int? = nil
        ) throws(DecodeError) -> (content: [UInt8], length: Int) {
            LZ4F_resetDecompressionContext(context)
            var info = LZ4F_frameInfo_t()
            var headerSize = bytes.count - offset
            let read = bytes.withUnsafeBytes { src in
                LZ4F_getFrameInfo(context, &info, src.baseAddress! + offset, &headerSize)
            }
            if LZ4F_isError(read) != 0 {
                // A cut or damaged header: the chunked path tells a torn write from damage as it always has.
                LZ4F_resetDecompressionContext(context)
                return try LZ4Frame.decodeInChunks(
                    bytes, at: offset, from: offset, context: context, maxContent: maxContent)
            }
            let size = info.contentSize > 0 ? Int(clamping: info.contentSize) : expectedContent ?? 0
            // LZ4 expands at most about 255 times: a declared size beyond that is damage, not a large frame.
            let plausible = min(maxContent, (bytes.count - offset) * 255 + (1 << 16))
            guard size > 0 && size <= plausible else {
                if size > maxContent { throw .corrupt("frame content exceeds \(maxContent) bytes") }
                return try LZ4Frame.decodeInChunks(
                    bytes, at: offset, from: offset + headerSize, context: context, maxContent: maxContent)
            }
            var failure: DecodeError?
            var position = offset + headerSize
            let content = [UInt8](unsafeUninitializedCapacity: size) { out, count in
                var produced = 0
                count = 0
                while true {
                    var sourceSize = bytes.count - position
                    var destinationSize = size - produced
                    let hint = bytes.withUnsafeBytes { src in
                        LZ4F_decompress(
                            context, out.baseAddress! + produced, &destinationSize, src.baseAddress! + position,
                            &sourceSize, nil)
                    }
                    if LZ4F_isError(hint) != 0 {
                        failure = .corrupt(String(cString: LZ4F_getErrorName(hint)))
                        return
                    }
                    position += sourceSize
                    produced += destinationSize
                    if hint == 0 {
                        guard produced == size else {
                            failure = .corrupt("frame content is not its declared size")
                            return
                        }
                        count = size
                        return
                    }
                    if position >= bytes.count && destinationSize == 0 {
                        failure = .truncated
                        return
                    }
                    if sourceSize == 0 && destinationSize == 0 {
                        failure = .corrupt("frame content is over its declared size")
                        return
                    }
                }
            }
            if let failure { throw failure }
            return (content, position - offset)
        }
    }

    /// Decodes a frame whose content size is not in its header, 64 KiB at a time; `position` is after the header.
    private static func decodeInChunks(
        _ bytes: [UInt8], at offset: Int, from start: Int, context: OpaquePointer, maxContent: Int
    ) throws(DecodeError) -> (content: [UInt8], length: Int) {
        var content: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var position = start
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
