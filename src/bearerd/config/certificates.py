"""Certificate credentials: load a certificate and its private key, check they belong together.

Imported only by configurations that have certificate credentials: ``cryptography`` costs ~8 MB
of resident memory that a secret-only daemon needn't carry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def load_certificate(cert_path: Path, key_path: Path, key_text: str, passphrase: bytes | None) -> tuple[str, str, str]:
    """(unencrypted PKCS#8 key PEM, certificate PEM, SHA-1 thumbprint hex) of the PEM certificate in
    ``cert_path`` with the RSA key ``key_text``; ValueError naming the problem."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read certificate_file {str(cert_path)!r}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(
            f"certificate_file {str(cert_path)!r} holds no PEM certificate "
            "(convert a .pfx with: openssl pkcs12 -in cert.pfx -nodes -out cert.pem)"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=passphrase)
    except (ValueError, TypeError) as exc:
        reason = "wrong or missing passphrase" if "password" in str(exc).lower() else "no PEM private key found"
        raise ValueError(f"private key in {str(key_path)!r} cannot be loaded: {reason}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"private key in {str(key_path)!r} must be RSA (Entra signs assertions with RS256/PS256)")
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or key.public_key().public_numbers() != public.public_numbers():
        raise ValueError(f"private key in {str(key_path)!r} does not belong to the certificate in certificate_file")
    unencrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = certificate.public_bytes(serialization.Encoding.DER)
    return (
        unencrypted,
        certificate.public_bytes(serialization.Encoding.PEM).decode(),
        hashlib.sha1(der, usedforsecurity=False).hexdigest(),
    )
