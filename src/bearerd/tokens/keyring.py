"""Encryption at rest for a user's token cache: a key in the desktop keyring, the cache sealed with it.

The cache file holds refresh tokens: whoever reads it can act as the user for weeks. Mode 0600
keeps other users out; a keyring also keeps out whoever gets the disk (a backup, a stolen
laptop, a copied home directory). On Linux the keyring is the Secret Service (GNOME Keyring,
KWallet) reached through libsecret — ``msal-extensions``' ``LibsecretPersistence``, installed with
``pip install 'bearerd[keyring]'``.

bearerd keeps its own file format and machinery (atomic writes, file lock, merge with `bearerd
login`), and stores only a random AES-256 key in the keyring: the file holds the cache sealed
with AES-GCM (the file name as associated data). ``cache_protection``:

* ``auto`` — the keyring when one answers, else the plain 0600 file; the daemon says which;
* ``keyring`` — the keyring or refuse to start (for machines where plain must never happen);
* ``plain`` — the 0600 file, e.g. for headless servers where no keyring runs.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from bearerd.errors import first_line

if TYPE_CHECKING:
    from bearerd.tokens.aead import Sealer

log = structlog.get_logger("bearerd.cacheprotect")

MAGIC = b"bearerd-aesgcm-v1\n"
KEY_SCHEMA = "io.bearerd.TokenCacheKey"
PLAIN = "plain file, mode 0600"
KEYRING = "encrypted (AES-256-GCM), key in the keyring (libsecret)"


class KeyringUnavailable(Exception):
    """No keyring answered (no libsecret/PyGObject, no Secret Service on the session bus)."""


class CacheUndecryptable(Exception):
    """The file is sealed, but not with the key the keyring holds (keyring reset or another machine)."""


class KeyringSealer:
    """Seals and opens one cache file with a key kept in the keyring (created on first use).

    Called with the cache's file lock held, so two processes never create two keys.
    """

    def __init__(self, cache_file: Path) -> None:
        try:
            from msal_extensions import LibsecretPersistence  # optional: bearerd[keyring]
            from msal_extensions.persistence import PersistenceError
        except ImportError as exc:
            raise KeyringUnavailable("msal-extensions is not installed (pip install 'bearerd[keyring]')") from exc
        self._not_found: type[Exception] = PersistenceError
        self._name = cache_file.name  # the associated data: a sealed cache only opens under its own name
        try:
            self._store: Any = LibsecretPersistence(
                str(cache_file.with_name(cache_file.name + ".keyring")),
                schema_name=KEY_SCHEMA,
                attributes={"cache_file": str(cache_file.resolve())},
            )
        except Exception as exc:  # ImportError (no PyGObject), RuntimeError/GLib.Error (no Secret Service)
            raise KeyringUnavailable(f"no keyring answered ({type(exc).__name__}: {first_line(exc, 160)})") from None
        self._sealer: Sealer | None = None

    def _keyed(self) -> Sealer:
        if self._sealer is None:
            from bearerd.tokens.aead import Sealer  # cryptography: loaded only where a keyring is in use

            try:
                key = base64.b64decode(self._store.load())
            except self._not_found:
                key = Sealer.new_key()
                encoded = base64.b64encode(key).decode()
                self._store.save(encoded)
                # libsecret can decline silently (a locked keyring, a dismissed prompt): a key that
                # was not kept must never seal a file, or nobody could open it again.
                try:
                    kept = self._store.load()
                except self._not_found:
                    kept = None
                if kept != encoded:
                    raise KeyringUnavailable("the keyring did not keep the new key (is it locked?)") from None
                log.info("cache.key_created", store="keyring")
            self._sealer = Sealer(key)
        return self._sealer

    def seal(self, plaintext: bytes) -> bytes:
        return MAGIC + self._keyed().seal(self._name, plaintext)

    def open(self, data: bytes) -> bytes:
        if not data.startswith(MAGIC):
            return data  # a plain cache from before protection was on: read it, the next write seals it
        from bearerd.tokens.aead import SealBroken

        try:
            return self._keyed().open(self._name, data[len(MAGIC) :])
        except SealBroken:
            raise CacheUndecryptable(self._name) from None


def choose_sealer(mode: str, cache_file: Path) -> tuple[KeyringSealer | None, str]:
    """The sealer for ``cache_protection`` and how to describe it; raise KeyringUnavailable for
    ``keyring`` when there is none."""
    if mode == "plain":
        return None, PLAIN
    try:
        return KeyringSealer(cache_file), KEYRING
    except KeyringUnavailable as exc:
        if mode == "keyring":
            raise
        return None, f"{PLAIN} ({exc})"
