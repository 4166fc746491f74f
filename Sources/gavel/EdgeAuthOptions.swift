import ArgumentParser
import Dispatch
import GavelGateway
import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// `gavel serve`'s TLS (main and admin ports) and identity-provider tokens (a JWKS file or URL, the issuer, the
/// audience and the role claim).
struct EdgeAuthOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "PEM certificate (then its chain) for TLS on the WebSocket/page port (wss://, https://); with --tls-key. Reloaded on SIGHUP. Env GAVEL_TLS_CERT; default none (plain)."
    )
    var tlsCert: String?

    @Option(name: .long, help: "PEM private key of --tls-cert. Env GAVEL_TLS_KEY.")
    var tlsKey: String?

    @Option(
        name: .long,
        help:
            "PEM certificate (then its chain) for TLS on the admin port; with --admin-tls-key. Reloaded on SIGHUP. Env GAVEL_ADMIN_TLS_CERT; default none (plain)."
    )
    var adminTlsCert: String?

    @Option(name: .long, help: "PEM private key of --admin-tls-cert. Env GAVEL_ADMIN_TLS_KEY.")
    var adminTlsKey: String?

    @Option(
        name: .long,
        help:
            "An identity provider's JSON Web Key Set file: RS256, ES256 and EdDSA tokens are checked with its keys by kid. Reloaded on SIGHUP. Env GAVEL_JWKS; default none."
    )
    var jwks: String?

    @Option(
        name: .long,
        help:
            "The key set's http:// or https:// URL instead: fetched at start, on SIGHUP, and when a token names an unknown kid (at most once per --jwks-refresh-seconds). Env GAVEL_JWKS_URL; default none."
    )
    var jwksUrl: String?

    @Option(
        name: .long,
        help:
            "Shortest time between two fetches of --jwks-url for unknown kids, in seconds (1 to 86400). Env GAVEL_JWKS_REFRESH_SECONDS; default 30."
    )
    var jwksRefreshSeconds: Int?

    @Option(
        name: .long,
        help: "PEM CA certificates an https --jwks-url must chain to. Env GAVEL_JWKS_CA; default the system's.")
    var jwksCa: String?

    @Option(
        name: .long,
        help: "Required iss of identity-provider tokens. Env GAVEL_JWT_ISSUER; default not checked.")
    var jwtIssuer: String?

    @Option(
        name: .long,
        help: "Required aud (or one of aud) of identity-provider tokens. Env GAVEL_JWT_AUDIENCE; default not checked.")
    var jwtAudience: String?

    @Option(
        name: .long,
        help:
            "Claim of identity-provider tokens that holds the role: a string, or an array whose first known role counts; dotted paths such as realm_access.roles. Env GAVEL_ROLE_CLAIM; default role."
    )
    var roleClaim: String?

    /// The settings that need no file or network, checked by `validate()`.
    struct Shape {
        var tlsCert: String?
        var tlsKey: String?
        var adminTLSCert: String?
        var adminTLSKey: String?
        var jwks: JWKSSource.Location?
        var refreshSeconds: Int
        var jwksCA: String?
        var issuer: String?
        var audience: String?
        var roleClaim: String
    }

    func shape() throws -> Shape {
        let s = Shape(
            tlsCert: try Setting.value(tlsCert, "GAVEL_TLS_CERT", default: "").nonEmpty,
            tlsKey: try Setting.value(tlsKey, "GAVEL_TLS_KEY", default: "").nonEmpty,
            adminTLSCert: try Setting.value(adminTlsCert, "GAVEL_ADMIN_TLS_CERT", default: "").nonEmpty,
            adminTLSKey: try Setting.value(adminTlsKey, "GAVEL_ADMIN_TLS_KEY", default: "").nonEmpty,
            jwks: try location(),
            refreshSeconds: try Setting.value(jwksRefreshSeconds, "GAVEL_JWKS_REFRESH_SECONDS", default: 30),
            jwksCA: try Setting.value(jwksCa, "GAVEL_JWKS_CA", default: "").nonEmpty,
            issuer: try Setting.value(jwtIssuer, "GAVEL_JWT_ISSUER", default: "").nonEmpty,
            audience: try Setting.value(jwtAudience, "GAVEL_JWT_AUDIENCE", default: "").nonEmpty,
            roleClaim: try Setting.value(roleClaim, "GAVEL_ROLE_CLAIM", default: "role"))
        guard (s.tlsCert == nil) == (s.tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together: give both or neither")
        }
        guard (s.adminTLSCert == nil) == (s.adminTLSKey == nil) else {
            throw ValidationError("--admin-tls-cert and --admin-tls-key go together: give both or neither")
        }
        guard (1...86_400).contains(s.refreshSeconds) else {
            throw ValidationError("--jwks-refresh-seconds must be 1 to 86400")
        }
        guard IdentityProvider.isValidClaimPath(s.roleClaim) else {
            throw ValidationError(
                "--role-claim must be a claim name or a dotted path such as realm_access.roles, not '\(s.roleClaim)'")
        }
        if s.jwks == nil, s.issuer != nil || s.audience != nil || s.jwksCA != nil {
            throw ValidationError("--jwt-issuer, --jwt-audience and --jwks-ca need --jwks or --jwks-url")
        }
        return s
    }

    private func location() throws -> JWKSSource.Location? {
        let file = try Setting.value(jwks, "GAVEL_JWKS", default: "").nonEmpty
        let url = try Setting.value(jwksUrl, "GAVEL_JWKS_URL", default: "").nonEmpty
        switch (file, url) {
        case (nil, nil): return nil
        case (let file?, nil): return .file(file)
        case (nil, let url?):
            guard let parsed = JWKSURL(url) else {
                throw ValidationError("--jwks-url must be an http:// or https:// URL, not '\(url)'")
            }
            return .url(parsed)
        case (_?, _?): throw ValidationError("give --jwks or --jwks-url, not both")
        }
    }

    /// The TLS pairs of the main and admin ports, loaded.
    ///
    /// - Throws: ``Refusal`` naming the option and the file at fault.
    func certificates(_ s: Shape) throws -> (main: TLSCertificates?, admin: TLSCertificates?) {
        func load(_ cert: String?, _ key: String?, _ option: String) throws -> TLSCertificates? {
            guard let cert, let key else { return nil }
            do {
                return try TLSCertificates(certificate: cert, key: key)
            } catch {
                throw Refusal("\(option): \(error)")
            }
        }
        return (
            try load(s.tlsCert, s.tlsKey, "--tls-cert/--tls-key"),
            try load(s.adminTLSCert, s.adminTLSKey, "--admin-tls-cert/--admin-tls-key")
        )
    }

    /// The identity provider's key set, read for the first time.
    ///
    /// - Throws: ``Refusal`` naming the file or URL and what is wrong with it.
    func keySet(_ s: Shape, group: EventLoopGroup, logger: Logger) async throws -> JWKSSource? {
        guard let location = s.jwks else { return nil }
        do {
            return try await JWKSSource(
                location: location, issuer: s.issuer, audience: s.audience, roleClaim: s.roleClaim,
                refreshSeconds: s.refreshSeconds, trust: s.jwksCA, group: group, logger: logger)
        } catch {
            throw Refusal("--jwks/--jwks-url: \(error)")
        }
    }
}

/// On SIGHUP, reads the TLS pairs and the key set again; each that fails keeps what it had, and says why in the log.
/// Installed only when there is something to reload (otherwise SIGHUP keeps its default action).
func reloadOnSIGHUP(tls: [TLSCertificates], jwks: JWKSSource?, logger: Logger) -> DispatchSourceSignal? {
    guard !tls.isEmpty || jwks != nil else { return nil }
    signal(SIGHUP, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
    source.setEventHandler {
        for pair in tls {
            do {
                try pair.reload()
                logger.info("SIGHUP: TLS certificate \(pair.certificatePath) reloaded for new connections")
            } catch {
                logger.error("SIGHUP: TLS certificate not reloaded, the one in use stays: \(error)")
            }
        }
        guard let jwks else { return }
        Task {
            do {
                try await jwks.reload()
            } catch {
                logger.error("SIGHUP: key set not reloaded, the one in use stays: \(error)")
            }
        }
    }
    source.resume()
    return source
}
