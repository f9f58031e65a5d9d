"""The benchmark backend's HTTPS identity: a private CA (trustme) and a certificate for 127.0.0.1.

The TLS-upstream rows need every proxy to verify the backend's certificate the way it would
verify App Proxy's — against a CA it was told to trust, not with verification off — so the CA
is written as a PEM file each proxy is pointed at (bearerd's credential ``ca_file``, nginx's
``proxy_ssl_trusted_certificate``, Caddy's ``tls_trusted_ca_certs``). bearerd's ``ca_file`` is
one file for the identity provider and the upstreams alike, so it gets a bundle of both CAs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the backend's CA alone (nginx, Caddy)
    cert: Path  # the backend's certificate chain
    key: Path
    bundle: Path  # the backend's CA + the emulator's CA (bearerd's credential ca_file)


def make_tls(workdir: Path, emulator_ca: Path) -> TlsFiles:
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="bearerd bench")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(workdir / "ca.pem", workdir / "backend.pem", workdir / "backend.key", workdir / "bundle.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.private_key_pem.write_to_path(str(files.key))
    files.key.chmod(0o600)
    with files.cert.open("wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    files.bundle.write_bytes(files.ca.read_bytes() + emulator_ca.read_bytes())
    return files
