"""Certificate credentials in every shape users have them — PKCS#12, PEM chains, encrypted PEM keys —
and the config errors for a wrong password or a key that doesn't match. Files only, no sockets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bearerd.config.loader import load_config
from bearerd.emulator.pki import make_client_certificate, write_private
from bearerd.errors import ConfigError
from support import certs
from support.configs import render_toml


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client-cert.pem", tmp_path / "client-key.pem"
    make_client_certificate(cert, key, "bearerd-test")
    return cert, key


def load(tmp_path: Path, **credential: object) -> object:
    tables: dict[str, dict[str, object]] = {
        "credentials.app": {"kind": "certificate", "tenant_id": "contoso", "client_id": "cid", **credential},
        "routes.api": {
            "match": {"path_prefix": "/api/"},
            "upstream": "https://api-contoso.msappproxy.net/",
            "credential": "app",
            "scopes": ["https://api-contoso.msappproxy.net//.default"],
        },
    }
    path = tmp_path / "bearerd.toml"
    path.write_text(render_toml(tables))
    return load_config(path, environ={"PFX_PASSWORD": "pfx-pass"}).secrets.for_credential("app").certificate


def problem(tmp_path: Path, **credential: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **credential)
    assert len(info.value.problems) == 1
    text = info.value.problems[0]
    assert text.startswith("[credentials.app] ")
    return text


def sha1(cert_file: Path) -> str:
    der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    write_private(path, text.encode())
    return path


def test_pfx_with_its_password_from_a_file_or_the_environment(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    pfx = certs.write_pfx(tmp_path / "app.pfx", *pair, b"pfx-pass")
    from_file = load(
        tmp_path, certificate_file=str(pfx), certificate_password_file=str(secret_file(tmp_path, "pw", "pfx-pass"))
    )
    from_env = load(tmp_path, certificate_file=str(pfx), certificate_password_env="PFX_PASSWORD")
    assert from_file == from_env
    assert from_file.thumbprint == sha1(pair[0])  # type: ignore[attr-defined]
    assert "ENCRYPTED" not in from_file.private_key_pem.get_secret_value()  # type: ignore[attr-defined]


def test_pfx_wrong_or_missing_password(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    pfx = certs.write_pfx(tmp_path / "app.pfx", *pair, b"pfx-pass")
    wrong = problem(
        tmp_path, certificate_file=str(pfx), certificate_password_file=str(secret_file(tmp_path, "pw", "nope"))
    )
    assert wrong == (
        f"[credentials.app] certificate_file {str(pfx)!r} cannot be opened: wrong password in "
        "certificate_password_file, or a damaged file"
    )
    missing = problem(tmp_path, certificate_file=str(pfx))
    assert f"certificate_file {str(pfx)!r} is password-protected (or damaged): set" in missing


def test_pfx_readable_by_others_is_refused_because_it_holds_the_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    pfx = certs.write_pfx(tmp_path / "app.pfx", *pair, None)
    pfx.chmod(0o644)
    assert "readable by group or others" in problem(tmp_path, certificate_file=str(pfx))


def test_pem_chain_finds_the_leaf_by_its_key_and_sends_it_first(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    leaf = x509.load_pem_x509_certificate(pair[0].read_bytes())
    intermediate, _ = certs.issuing_ca()
    chain = tmp_path / "chain.pem"
    chain.write_bytes(certs.pem(intermediate, leaf))  # leaf last: still found
    material = load(tmp_path, certificate_file=str(chain), private_key_file=str(pair[1]))
    loaded = x509.load_pem_x509_certificates(material.certificate_pem.encode())  # type: ignore[attr-defined]
    assert loaded == [leaf, intermediate]
    assert material.thumbprint == sha1(pair[0])  # type: ignore[attr-defined]


def test_encrypted_pem_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    key = tmp_path / "encrypted.key"
    write_private(key, certs.encrypted_pem_key(pair[1], b"key-pass"))
    good = secret_file(tmp_path, "pass", "key-pass")
    assert load(
        tmp_path, certificate_file=str(pair[0]), private_key_file=str(key), private_key_passphrase_file=str(good)
    )
    bad = secret_file(tmp_path, "bad", "wrong")
    assert problem(
        tmp_path, certificate_file=str(pair[0]), private_key_file=str(key), private_key_passphrase_file=str(bad)
    ) == (
        f"[credentials.app] the private key in private_key_file {str(key)!r} cannot be loaded: wrong passphrase "
        "(private_key_passphrase_file) or a damaged key"
    )
    assert "is encrypted: set its passphrase" in problem(
        tmp_path, certificate_file=str(pair[0]), private_key_file=str(key)
    )


def test_a_key_of_another_certificate(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    make_client_certificate(other_cert, other_key, "other")
    text = problem(tmp_path, certificate_file=str(pair[0]), private_key_file=str(other_key))
    assert text == (
        f"[credentials.app] the private key in private_key_file {str(other_key)!r} does not belong to the certificate "
        f"in certificate_file {str(pair[0])!r} (none of its 1 certificate(s) has this key's public half)"
    )
