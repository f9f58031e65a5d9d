"""Certificate files in the shapes users have them: PKCS#12, PEM chains, encrypted PEM keys."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from bearerd.emulator.pki import self_signed, write_private


def load_pair(cert_file: Path, key_file: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return x509.load_pem_x509_certificate(cert_file.read_bytes()), key


def pfx(
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    password: bytes | None,
    extra: list[x509.Certificate] | None = None,
) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"bearerd", key, cert, extra, encryption)


def write_pfx(path: Path, cert_file: Path, key_file: Path, password: bytes | None) -> Path:
    cert, key = load_pair(cert_file, key_file)
    write_private(path, pfx(cert, key, password))
    return path


def encrypted_pem_key(key_file: Path, passphrase: bytes) -> bytes:
    return _key(key_file).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase)
    )


def _key(key_file: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def issuing_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """An intermediate CA, to build chains with."""
    return self_signed("bearerd test intermediate", ca=True)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
