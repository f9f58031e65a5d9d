"""bearerd's own local CA: certificates for ``tls_listen`` and for the hosts ``intercept_https`` serves.

The CA is generated once and kept in the state directory (key 0600, written atomically), so a
client trusts it once (``bearerd ca export``). It carries critical X.509 Name Constraints that
permit only the names it is for — the loopback names, the ``host`` routes of ``tls_listen`` and,
with ``intercept_https``, the routes' upstream hosts — so trusting it can't let anyone (holding
its key or not) impersonate another site to a verifying client. A DNS constraint covers the name
and its subdomains (RFC 5280 §4.2.1.10); IP addresses are constrained to exactly themselves.
When the configuration names a host outside the constraints, the CA won't sign for it:
``bearerd ca rotate`` issues a new CA for the current names. Leaf certificates are minted in
memory, one per name set, and chosen by SNI (``tls_listen``) or by the CONNECT host.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bearerd.config.schema import Settings
from bearerd.files import write_atomically

log = structlog.get_logger("bearerd.localca")

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=90)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def required_names(settings: Settings) -> list[str]:
    """The names the local CA must be able to sign for with this configuration, in a stable order."""
    names = list(LOOPBACK_NAMES)
    if settings.server.tls_listen:
        names += [r.match.host.rsplit(":", 1)[0] for r in settings.routes.values() if r.match.host]
    if settings.server.intercept_https:
        upstreams = (urlsplit(r.upstream) for r in settings.routes.values())
        names += [u.hostname for u in upstreams if u.scheme == "https" and u.hostname]
    return list(dict.fromkeys(n.lower().rstrip(".") for n in names))


def open_local_ca(settings: Settings, state_dir: Path) -> LocalCA:
    """The CA of this configuration (made for its names if there is none yet), with one warning when it
    may not sign for some of them — or has no name constraints at all (made by an older bearerd)."""
    names = required_names(settings)
    ca = LocalCA(state_dir / "tls", names)
    missing = ca.not_covered(names)
    fix = "run `bearerd ca rotate -c FILE`, restart bearerd, and trust the new CA (`bearerd ca export`)"
    if missing:
        detail = "the local CA's name constraints predate these hosts: it won't sign for them"
        log.warning("local_ca.names_not_covered", hosts=missing, ca=str(ca.cert_file), detail=detail, fix=fix)
    elif not ca.constraints.present:
        detail = "the local CA has no name constraints (made by an older bearerd)"
        log.warning("local_ca.unconstrained", ca=str(ca.cert_file), detail=detail, fix=fix)
    return ca


@dataclass(frozen=True, slots=True)
class Constraints:
    """What a CA's Name Constraints permit (None: the CA has none — made by an older bearerd)."""

    dns: tuple[str, ...] | None
    ips: tuple[IPNetwork, ...] | None

    @classmethod
    def of(cls, names: Iterable[str]) -> Constraints:
        dns: list[str] = []
        ips: list[IPNetwork] = []
        for name in names:
            ip = _ip(name)
            if ip is not None:
                ips.append(ipaddress.ip_network(ip))
            else:
                dns.append(name.lower().rstrip("."))
        return cls(tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips)))

    @classmethod
    def read(cls, cert: x509.Certificate) -> Constraints:
        try:
            ext = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return cls(None, None)
        subtrees = ext.permitted_subtrees or []
        dns = tuple(g.value.lower() for g in subtrees if isinstance(g, x509.DNSName))
        ips = tuple(g.value for g in subtrees if isinstance(g, x509.IPAddress))
        return cls(dns, ips)  # type: ignore[arg-type]  # IPAddress in name constraints holds a network

    @property
    def present(self) -> bool:
        return self.dns is not None

    def permits(self, name: str) -> bool:
        ip = _ip(name)
        if ip is not None:
            return self.ips is None or any(ip in net for net in self.ips)
        host = name.lower().rstrip(".")
        return self.dns is None or any(host == d or host.endswith("." + d) for d in self.dns)

    def extension(self) -> x509.NameConstraints:
        # Both name forms always get a subtree (the loopback names), so neither is left unconstrained.
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns or ()]
        permitted += [x509.IPAddress(n) for n in self.ips or ()]
        return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


class NameNotPermitted(Exception):
    """The CA's Name Constraints don't cover this name: it won't sign for it."""


class LocalCA:
    """The CA in ``directory`` (``local-ca.pem``, ``local-ca.key``), created for ``names`` if absent."""

    def __init__(self, directory: Path, names: Iterable[str] = LOOPBACK_NAMES) -> None:
        self.cert_file = directory / "local-ca.pem"
        self.key_file = directory / "local-ca.key"
        if self.cert_file.exists() and self.key_file.exists():
            self._cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != self._cert.public_key():
                raise ValueError(f"{self.key_file} is not the key of {self.cert_file}: run `bearerd ca rotate`")
            self._key = key
        else:
            self._key, self._cert = self._create(directory, names)
        self.constraints = Constraints.read(self._cert)

    @classmethod
    def rotate(cls, directory: Path, names: Iterable[str]) -> LocalCA:
        """A new CA (new key) for ``names``, replacing the one in ``directory``."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (directory / "local-ca.pem", directory / "local-ca.key"):
            path.unlink(missing_ok=True)
        return cls(directory, names)

    def _create(self, directory: Path, names: Iterable[str]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        constraints = Constraints.of([*LOOPBACK_NAMES, *names])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bearerd local CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(constraints.extension(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        # The key first: a crash in between leaves a key without its certificate, which is made anew.
        write_atomically(self.key_file, _key_pem(key))
        write_atomically(self.cert_file, cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    def java_truststore(self) -> bytes:
        """The CA certificate as a Java truststore: PKCS#12 with Java's trusted-certificate attribute, which
        Java 9+ reads as its default keystore type and as JKS (public data only: no password)."""
        entry = pkcs12.PKCS12Certificate(self._cert, b"bearerd-local-ca")
        return pkcs12.serialize_java_truststore([entry], serialization.NoEncryption())

    def not_covered(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` this CA may not sign for."""
        return [n for n in names if not self.constraints.permits(n)]

    def leaf(self, names: tuple[str, ...]) -> tuple[bytes, bytes]:
        """(certificate chain PEM, key PEM) of a new server certificate for ``names``."""
        refused = self.not_covered(names)
        if refused:
            raise NameNotPermitted(", ".join(refused))
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for n in names:
            ip = _ip(n)
            alt.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(n))
        cert = (
            x509.CertificateBuilder()
            # Not a host name: verifiers that check a subject CN against the constraints have nothing to object to.
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bearerd local certificate")]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(hours=1))
            .not_valid_after(_now() + LEAF_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem(), _key_pem(key)

    def context(self, names: tuple[str, ...]) -> ssl.SSLContext:
        """A server context with a new leaf for ``names`` (``NameNotPermitted`` if the CA may not sign)."""
        chain, key = self.leaf(names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.set_alpn_protocols(["http/1.1"])
        # load_cert_chain reads files only; the key lives in a private temp dir for that instant.
        with tempfile.TemporaryDirectory() as tmp:
            cert_path, key_path = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
            write_atomically(cert_path, chain)
            write_atomically(key_path, key)
            context.load_cert_chain(cert_path, key_path)
        return context

    def server_context(self, host_names: list[str]) -> ssl.SSLContext:
        """A context for the loopback names whose SNI callback picks the host route's certificate
        (host names the CA may not sign for get none: the loopback certificate is presented)."""
        default = self.context(LOOPBACK_NAMES)
        per_host = {h.lower(): self.context((h.lower(),)) for h in host_names if self.constraints.permits(h)}

        def pick(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            chosen = per_host.get((server_name or "").lower())
            if chosen is not None:
                sock.context = chosen

        default.sni_callback = pick
        return default
