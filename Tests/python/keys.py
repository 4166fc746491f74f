"""Key material the tests make themselves: a CA and server certificates with the `openssl` command, and identity
provider keys (RS256, ES256, EdDSA), their JWKS and the tokens they sign with Python's `cryptography`."""

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class CA:
    """A certificate authority in `directory`: ca.key, ca.crt (P-256), which signs server certificates."""

    def __init__(self, directory, name):
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", f"/CN={name}", cwd=directory)
        self.cert = directory / "ca.crt"

    def issue(self, cn, serial):
        """A certificate for 127.0.0.1 and localhost with common name `cn` and serial `serial`: (cert, key) paths."""
        d = self.directory
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{cn}.key", "-out", f"{cn}.csr", "-subj", f"/CN={cn}", cwd=d)
        (d / f"{cn}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", f"{cn}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", str(serial),
                "-days", "2", "-extfile", f"{cn}.ext", "-out", f"{cn}.crt", cwd=d)
        return d / f"{cn}.crt", d / f"{cn}.key"

    def client_context(self):
        """A client TLS context that trusts this CA only."""
        context = ssl.create_default_context(cafile=str(self.cert))
        return context


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class SigningKey:
    """An identity provider's private key: `alg` is RS256, ES256 or EdDSA; `kid` names it in the JWKS."""

    def __init__(self, alg, kid):
        self.alg = alg
        self.kid = kid
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)

    def jwk(self, with_alg=True):
        """The public key as a JWK."""
        public = self.private.public_key()
        if self.alg == "RS256":
            numbers = public.public_numbers()
            key = {"kty": "RSA", "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
        elif self.alg == "ES256":
            numbers = public.public_numbers()
            key = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")),
                   "y": b64url(numbers.y.to_bytes(32, "big"))}
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        key.update({"kid": self.kid, "use": "sig"})
        if with_alg:
            key["alg"] = self.alg
        return key

    def public_pem(self):
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims, header=None):
        """A token with `claims`, signed with this key; `header` overrides header fields (alg, kid)."""
        h = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        h.update(header or {})
        signing_input = (b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
        if self.alg == "RS256":
            signature = self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self.private.sign(signing_input)
        return signing_input.decode() + "." + b64url(signature)


def jwks(*keys):
    return json.dumps({"keys": [k.jwk() for k in keys]})


def claims(sub="alice", role="bidder", ttl=600, **extra):
    c = {"sub": sub, "exp": int(time.time()) + ttl}
    if role is not None:
        c["role"] = role
    c.update(extra)
    return c


def hs256_with_key_bytes(claims_, key_bytes, kid):
    """An HS256 token HMAC-signed with `key_bytes` (a public key's PEM: the `alg` confusion attack)."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims_).encode())
    signature = hmac.new(key_bytes, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)
