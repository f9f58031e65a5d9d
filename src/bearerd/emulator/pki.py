"""A throwaway local CA so the emulator speaks real TLS and MSAL/aiohttp verify it.

``trustme`` makes the CA and the server certificate (for 127.0.0.1, localhost, ::1); the
client certificate for the certificate credential is a plain self-signed one, as Entra app
registrations accept.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class LocalCA:
    """The emulator's CA: ``ca_file`` is what clients trust."""

    def __init__(self, directory: Path) -> None:
        self._ca = trustme.CA(organization_name="bearerd emulator")
        self.ca_file = directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost", "::1")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        return context


_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def throwaway_rsa_key(role: str) -> rsa.RSAPrivateKey:
    """The process's RSA key for one role of an emulator (token signing, a federated issuer, the
    client certificate). A 2048-bit key takes ~30 ms to make and a test run starts hundreds of
    emulator stacks, each needing three; the keys never leave the machine, and what tells stacks
    apart stays unique per stack (key IDs, issuers and audiences carry their ports)."""
    key = _KEYS.get(role)
    if key is None:
        key = _KEYS[role] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, created that way (no window with wider mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def self_signed(
    common_name: str, ca: bool = False, key: rsa.RSAPrivateKey | None = None
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A 30-day self-signed certificate for ``key`` (a new RSA key unless given; ``ca``: one that may
    issue others)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()), key


def make_client_certificate(
    cert_path: Path, key_path: Path, common_name: str, key: rsa.RSAPrivateKey | None = None
) -> bytes:
    """A self-signed RSA certificate + key (PEM files; a new key unless given); returns the certificate PEM."""
    cert, key = self_signed(common_name, key=key)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    write_private(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return cert_pem


def thumbprints(cert_pem: bytes) -> tuple[bytes, bytes]:
    """(SHA-1, SHA-256) digests of the certificate's DER form, as Entra's x5t / x5t#S256 use them."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).digest(), hashlib.sha256(der).digest()
