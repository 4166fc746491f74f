import Crypto
import GavelCore

extension Engine {
    /// The same hex digest as ``Engine/stateHash()`` — SHA-256 of ``Engine/encodeState()`` — computed with
    /// swift-crypto's SHA-256 instead of the rules module's portable one: several times faster on a large state,
    /// which is most of what `gavel replay` and `gavel verify` spend after the journal itself.
    ///
    /// The state is hashed a piece at a time as it is encoded (``stateHashPieceBytes`` each, in one buffer used
    /// again for every piece), never held whole: the whole state of a million remembered ids is about 60 MB, and
    /// growing an array to that size (each doubling copied, every page of it fresh memory faulted in) took longer
    /// than encoding it.
    public func fastStateHash() -> String {
        var hasher = SHA256()
        encodeState(pieceBytes: Self.stateHashPieceBytes) { piece in
            piece.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        }
        return SHA256Digest.hexString(Array(hasher.finalize()))
    }

    /// The size of the pieces ``fastStateHash()`` hashes: small enough to stay in the cache between being written and
    /// being hashed.
    static let stateHashPieceBytes = 256 * 1024
}
