"""bearerd's own local CA, for clients that refuse plain http (``[server] tls_listen``).

The CA is generated once and kept in the state directory (key 0600), so a client trusts it once
(``bearerd ca export``). Leaf certificates are minted in memory at start-up — one for the
loopback names and one per ``host`` route — and chosen by SNI.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bearerd.files import write_atomically

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCA:
    def __init__(self, directory: Path) -> None:
        self.cert_file = directory / "local-ca.pem"
        key_file = directory / "local-ca.key"
        if self.cert_file.exists() and key_file.exists():
            self._cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we wrote it
            self._key = key
            return
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bearerd local CA")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        write_atomically(key_file, _key_pem(self._key))
        write_atomically(self.cert_file, self.cert_pem())

    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def _leaf(self, names: tuple[str, ...]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem(), _key_pem(key)

    def _context(self, names: tuple[str, ...]) -> ssl.SSLContext:
        chain, key = self._leaf(names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain reads files only; the key lives in a private temp dir for that instant.
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            write_atomically(cert_path, chain)
            write_atomically(key_path, key)
            context.load_cert_chain(cert_path, key_path)
        return context

    def server_context(self, host_names: list[str]) -> ssl.SSLContext:
        """A context for the loopback names whose SNI callback picks the host route's certificate."""
        default = self._context(_LOOPBACK_NAMES)
        per_host = {h.lower(): self._context((h.lower(),)) for h in host_names}

        def pick(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            chosen = per_host.get((server_name or "").lower())
            if chosen is not None:
                sock.context = chosen

        default.sni_callback = pick
        return default
