"""The files a credential signs in with, and whether they changed.

A refusal (a revoked sign-in, a wrong secret, a stale federated token) ends when one of them
changes: ``bearerd login`` rewrites the user's token cache, Kubernetes rotates the federated
token, an operator replaces the secret or key file. The token provider compares a ``stamp`` of
them — one ``stat`` per file, no read, no network — to know when to ask again (``provider.py``),
and a secret or key read at start-up is read again when its file changed (``identity.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bearerd.config.schema import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    Credential,
)

Stamp = tuple[tuple[int, int, int] | None, ...]


def secret_files(cred: Credential) -> tuple[Path, ...]:
    """The files the secret material was read from at start-up (a secret, a key, a certificate)."""
    if isinstance(cred, ClientSecretCredential):
        return (cred.client_secret_file,) if cred.client_secret_file is not None else ()
    if isinstance(cred, CertificateCredential):
        key = cred.private_key_file or cred.certificate_file
        given = (cred.certificate_file, key, cred.private_key_passphrase_file)
        return tuple(dict.fromkeys(p for p in given if p is not None))
    return ()


def credential_files(cred: Credential, user_cache: Path | None) -> tuple[Path, ...]:
    """Every file whose change can change the identity provider's answer for ``cred``."""
    if isinstance(cred, ClientAssertionCredential):
        return (cred.token_file,)
    if user_cache is not None:
        return (user_cache,)
    return secret_files(cred)


def stamp(paths: tuple[Path, ...]) -> Stamp:
    """(modification time, size, inode) of each file; None for one that is missing."""
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)
