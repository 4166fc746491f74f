import GavelJournal
import NIOCore
import NIOSSL
import Synchronization

/// A certificate chain and its private key, from PEM files, and the TLS context made from them (TLS 1.2 and 1.3,
/// swift-nio-ssl's default ciphers). The context is swapped whole by ``reload()``: a connection takes the current
/// one when it is accepted, so connections already open keep theirs and new handshakes use the new pair.
public final class TLSCertificates: Sendable {
    /// Why a pair cannot be used: says which file and what is wrong with it.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let certificatePath: String
    public let keyPath: String
    private let context: Mutex<NIOSSLContext>

    /// Loads the pair (see ``load(certificate:key:)``).
    ///
    /// - Throws: ``Failure`` for a missing, unreadable or non-PEM file, or a key that is not the certificate's.
    public init(certificate: String, key: String) throws(Failure) {
        self.certificatePath = certificate
        self.keyPath = key
        self.context = Mutex(try Self.load(certificate: certificate, key: key))
    }

    /// The context new connections use.
    public var current: NIOSSLContext { context.withLock { $0 } }

    /// Reads the files again and, if they make a valid pair, uses them for new connections from now on. On failure
    /// the pair in use stays.
    ///
    /// - Throws: ``Failure``, saying why the new files were not taken.
    public func reload() throws(Failure) {
        let fresh = try Self.load(certificate: certificatePath, key: keyPath)
        context.withLock { $0 = fresh }
    }

    /// A TLS handler for a connection accepted now.
    func handler() -> NIOSSLServerHandler { NIOSSLServerHandler(context: current) }

    /// A server context for the chain in `certificate` (the server's certificate first, then intermediates) and the
    /// private key in `key`, both PEM.
    static func load(certificate: String, key: String) throws(Failure) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(try read(certificate, what: "certificate"))
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(certificate) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        guard !chain.isEmpty else {
            throw Failure(description: "\(certificate) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(bytes: try read(key, what: "private key"), format: .pem)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(key) holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        // A connection the server closes (its handshake deadline, a slow consumer) waits at most this long for the
        // client's close_notify before its socket is freed: SwiftNIO's 5 s default kept every connection closed at the
        // handshake deadline, and its place from its address, 5 s past the deadline.
        configuration.shutdownTimeout = .seconds(1)
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw Failure(description: "the private key in \(key) is not the key of the certificate in \(certificate)")
        }
    }

    private static func read(_ path: String, what: String) throws(Failure) -> [UInt8] {
        do {
            return try Files.readAll(path)
        } catch {
            throw Failure(description: "cannot read the \(what) file: \(error)")
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds TLS in front of everything when `certificates` is given; with none, adds nothing, so plain connections
    /// pay nothing for it.
    func addTLS(_ certificates: TLSCertificates?) throws {
        guard let certificates else { return }
        try addHandler(certificates.handler(), position: .first)
    }
}
