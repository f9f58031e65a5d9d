"""Certificate files in the shapes users have them: PKCS#12, PEM chains, encrypted PEM keys."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from bearerd.emulator.pki import write_private


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
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bearerd test intermediate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
