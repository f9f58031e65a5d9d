"""The local CA's Name Constraints: what it signs, what a verifier accepts, rotation. Files only, no sockets."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bearerd.config.schema import Settings
from bearerd.proxy.localca import LocalCA, NameNotPermitted, required_names
from support.certs import forged_leaf

UPSTREAM = "secretapi-contoso.msappproxy.net"


def verify(ca: LocalCA, leaf: x509.Certificate, name: str) -> None:
    try:
        subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(Store([ca.certificate])).build_server_verifier(subject)  # type: ignore[arg-type]
    verifier.verify(leaf, [])


def test_a_new_ca_is_constrained_to_its_names_critically(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, [UPSTREAM, "127.0.0.1"])
    ext = ca.certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    assert set(ext.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"),
        x509.DNSName(UPSTREAM),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    assert ext.value.excluded_subtrees is None
    assert stat.S_IMODE(ca.key_file.stat().st_mode) == 0o600


def test_verifiers_accept_a_permitted_leaf_and_refuse_a_forged_one(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, [UPSTREAM])
    for name in (UPSTREAM, "localhost", "127.0.0.1", "::1"):
        chain, _ = ca.leaf((name,))
        verify(ca, x509.load_pem_x509_certificates(chain)[0], name)
    verify(ca, forged_leaf(tmp_path, "api." + UPSTREAM), "api." + UPSTREAM)  # a subtree: its subdomains too
    for name in ("login.microsoftonline.com", "msappproxy.net", "evil-" + UPSTREAM, "10.0.0.1"):
        with pytest.raises(VerificationError, match=r"(?i)constraint"):
            verify(ca, forged_leaf(tmp_path, name), name)


def test_the_ca_never_signs_for_a_name_outside_its_constraints(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, [UPSTREAM])
    with pytest.raises(NameNotPermitted, match=r"other\.example"):
        ca.leaf(("other.example",))
    assert ca.not_covered([UPSTREAM, "other.example", "10.1.2.3", "LOCALHOST"]) == ["other.example", "10.1.2.3"]
    assert LocalCA(tmp_path, ["other.example"]).not_covered(["other.example"]) == ["other.example"]  # kept, not remade


def test_a_ca_without_constraints_signs_anything_and_says_so(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bearerd local CA")])
    now = datetime.datetime.now(datetime.UTC)
    old = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "local-ca.pem").write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "local-ca.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ca = LocalCA(tmp_path)
    assert not ca.constraints.present
    assert ca.not_covered(["anything.example"]) == []


def test_rotate_makes_a_new_key_and_certificate_for_the_current_names(tmp_path: Path) -> None:
    before = LocalCA(tmp_path, [UPSTREAM])
    old_key = before.key_file.read_bytes()
    after = LocalCA.rotate(tmp_path, [UPSTREAM, "hr-contoso.msappproxy.net"])
    assert after.key_file.read_bytes() != old_key
    assert after.certificate.public_key() != before.certificate.public_key()
    assert after.not_covered(["hr-contoso.msappproxy.net"]) == []
    assert stat.S_IMODE(after.key_file.stat().st_mode) == 0o600
    assert LocalCA(tmp_path).cert_pem() == after.cert_pem()  # what the next start loads


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    LocalCA(tmp_path)
    other = LocalCA(tmp_path / "other")
    (tmp_path / "local-ca.key").write_bytes(other.key_file.read_bytes())
    with pytest.raises(ValueError, match="bearerd ca rotate"):
        LocalCA(tmp_path)


def test_required_names_follow_the_configuration() -> None:
    routes = {
        "api": {"match": {"path_prefix": "/api/"}, "upstream": f"https://{UPSTREAM}/", "credential": "c"},
        "hr": {"match": {"host": "hr.localhost:8443"}, "upstream": "https://HR-contoso.msappproxy.net:8443/x/",
               "credential": "c"},
        "plain": {"match": {"path_prefix": "/p/"}, "upstream": "http://plain.example/", "credential": "c"},
    }  # fmt: skip
    creds = {"c": {"kind": "managed_identity"}}

    def names(**server: object) -> list[str]:
        return required_names(Settings(server=server, credentials=creds, routes=routes))  # type: ignore[arg-type]

    assert names() == ["localhost", "127.0.0.1", "::1"]
    assert names(tls_listen=["127.0.0.1:8443"]) == ["localhost", "127.0.0.1", "::1", "hr.localhost"]
    assert names(intercept_https=True) == ["localhost", "127.0.0.1", "::1", UPSTREAM, "hr-contoso.msappproxy.net"]
