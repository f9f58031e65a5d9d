"""Certificate credentials: load a certificate (PEM, PEM chain or PKCS#12) and its key, check they belong together.

Imported only by configurations that have certificate credentials: ``cryptography`` costs ~8 MB
of resident memory that a secret-only daemon needn't carry. The same loader serves files and
what Azure Key Vault holds for a certificate (PKCS#12 or PEM), so both fail with the same words.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = b"PRIVATE KEY-----"


@dataclass(frozen=True, slots=True)
class LoadedCertificate:
    private_key_pem: str  # unencrypted PKCS#8, for MSAL
    chain_pem: str  # the leaf first, then the rest of the chain (what MSAL sends as x5c)
    thumbprint: str  # SHA-1 of the leaf's DER, hex (what Entra registers)


def is_pkcs12(data: bytes) -> bool:
    """PKCS#12 is DER (starts with a SEQUENCE); PEM is text."""
    return data[:1] == b"\x30"


def load_certificate(
    cert_data: bytes,
    key_data: bytes | None,
    password: bytes | None,
    *,
    cert_name: str,
    key_name: str,
    password_name: str,
) -> LoadedCertificate:
    """The key and chain in ``cert_data`` (PEM or PKCS#12) with the key in ``key_data`` (PEM; None: the
    key is in ``cert_data``). ValueError naming the source (``cert_name``…) and what is wrong."""
    if is_pkcs12(cert_data):
        key, certificates = _from_pkcs12(cert_data, password, cert_name, password_name)
    else:
        certificates = _pem_certificates(cert_data, cert_name)
        pem_key = key_data if key_data is not None else cert_data
        if _PEM_KEY not in pem_key:
            raise ValueError(f"{key_name} holds no PEM private key (BEGIN … PRIVATE KEY)")
        try:
            loaded = serialization.load_pem_private_key(pem_key, password=password)
        except TypeError:  # encrypted without a password, or a password for a plain key
            wanted = (
                "is encrypted: set its passphrase" if password is None else "is not encrypted: remove the passphrase"
            )
            raise ValueError(f"the private key in {key_name} {wanted} ({password_name})") from None
        except ValueError:
            raise ValueError(
                f"the private key in {key_name} cannot be loaded: wrong passphrase ({password_name}) or a damaged key"
            ) from None
        key = _rsa(loaded, key_name)
    leaf = _leaf_for(key, certificates, cert_name, key_name)
    chain = [leaf] + [c for c in certificates if c is not leaf]
    unencrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = leaf.public_bytes(serialization.Encoding.DER)
    return LoadedCertificate(
        private_key_pem=unencrypted,
        chain_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain),
        thumbprint=hashlib.sha1(der, usedforsecurity=False).hexdigest(),
    )


def _pem_certificates(data: bytes, name: str) -> list[x509.Certificate]:
    if _PEM_CERT not in data:
        raise ValueError(f"{name} holds no certificate: give a PEM file (BEGIN CERTIFICATE) or a .pfx/.p12")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{name} holds a damaged PEM certificate") from None


def _from_pkcs12(
    data: bytes, password: bytes | None, name: str, password_name: str
) -> tuple[rsa.RSAPrivateKey, list[x509.Certificate]]:
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except ValueError:
        if password is None:
            raise ValueError(f"{name} is password-protected (or damaged): set {password_name}") from None
        raise ValueError(f"{name} cannot be opened: wrong password in {password_name}, or a damaged file") from None
    if bundle.key is None or bundle.cert is None:
        raise ValueError(f"{name} must hold the certificate and its private key (export it with the key)")
    chain = [bundle.cert.certificate] + [c.certificate for c in bundle.additional_certs]
    return _rsa(bundle.key, name), chain


def _rsa(key: object, name: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the private key in {name} must be RSA (Entra signs client assertions with RS256/PS256)")
    return key


def _leaf_for(
    key: rsa.RSAPrivateKey, certificates: list[x509.Certificate], cert_name: str, key_name: str
) -> x509.Certificate:
    """The certificate of ``key``: in a chain, whichever one it is (leaf first is a convention, not a rule)."""
    mine = key.public_key().public_numbers()
    for certificate in certificates:
        public = certificate.public_key()
        if isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == mine:
            return certificate
    raise ValueError(
        f"the private key in {key_name} does not belong to the certificate in {cert_name} (none of its "
        f"{len(certificates)} certificate(s) has this key's public half)"
    )
