"""Certificate files in the shapes users have them: PKCS#12, PEM chains, encrypted PEM keys; and a leaf
forged with a CA's own key, to check what verifiers make of name constraints."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def forged_leaf(ca_dir: Path, name: str) -> x509.Certificate:
    """A leaf for ``name`` signed with the CA's own key, as someone holding the key could make it."""
    ca_key = serialization.load_pem_private_key((ca_dir / "local-ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "local-ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        alt = x509.DNSName(name)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
