"""The per-session certificate authority that lets rcc's proxy terminate TLS for credential hosts.

Imported only when a session has credentials: it loads `cryptography` (~30 ms), which `rcc run` without
credentials never pays for.

Invariants:
1. The CA key never reaches the sandbox: it is made in rcc's process and kept in memory; when the proxy runs in
   another thread it is handed over through a 0600 file in rcc's state directory (never bound into a sandbox),
   which rcc removes when the session ends.
2. The CA is constrained: basicConstraints CA:TRUE pathlen 0, keyUsage keyCertSign only, valid for 2 days; leaf
   certificates are for one DNS name each (serverAuth), made on demand and cached for the session.
3. Upstream TLS verifies the real server against the system trust store: ssl.create_default_context(), which
   honours SSL_CERT_FILE / SSL_CERT_DIR in rcc's own environment (tests point it at their test CA).
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = datetime.timedelta(days=2)
SKEW = datetime.timedelta(hours=1)  # clocks in the sandbox are the host's; an hour covers small differences


class SessionCA:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())  # one key for all leaves of the session
        self._contexts: dict[str, ssl.SSLContext] = {}

    def __repr__(self) -> str:
        return f"SessionCA({self.cert.subject.rfc4514_string()})"

    @classmethod
    def create(cls, session: str) -> SessionCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rcc session CA {session}"[:64])])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> SessionCA:
        key = serialization.load_pem_private_key(key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the session CA key is not an EC key")
        return cls(key, x509.load_pem_x509_certificate(cert_pem))

    def leaf(self, host: str) -> tuple[bytes, bytes]:
        """(cert chain PEM, key PEM) for `host`, signed by this CA."""
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + VALID)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        key_pem = self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem(), key_pem

    def server_context(self, host: str) -> ssl.SSLContext:
        """The TLS server context rcc shows the sandbox for `host` (cached). ALPN: http/1.1 only, the one
        protocol rcc can read requests of."""
        ctx = self._contexts.get(host)
        if ctx is not None:
            return ctx
        chain, key = self.leaf(host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        # load_cert_chain takes paths only: a private temporary directory, removed at once (the key is the
        # leaves' key, never the CA's; the files live for microseconds in rcc's own 0700 temp directory).
        with tempfile.TemporaryDirectory(prefix="rcc-leaf-") as d:
            cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            for p, data in ((cp, chain), (kp, key)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(cp, kp)
        self._contexts[host] = ctx
        return ctx


def upstream_context(cafile: str | None = None) -> ssl.SSLContext:
    """The client context for the real server: the system trust store (SSL_CERT_FILE in rcc's environment
    replaces it, as for any OpenSSL program), hostname checked, ALPN http/1.1."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS, Alpine
)


def system_bundle() -> bytes:
    """The system's CA bundle (what the sandbox trusted before), or b"" when none is found. SSL_CERT_FILE in
    rcc's environment wins, as it does for OpenSSL."""
    cands = [os.environ.get("SSL_CERT_FILE", ""), ssl.get_default_verify_paths().cafile or "", *SYSTEM_BUNDLES]
    for p in cands:
        if p and os.path.isfile(p):
            with open(p, "rb") as f:
                return f.read()
    return b""
