"""AES-256-GCM sealing bound to a name: what the fleet stores in Redis and the keyring-protected cache file.

The name (a Redis key, a file name) is the associated data, so a sealed blob moved under another
name fails to open instead of being taken for that name's content.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SealBroken(Exception):
    """The blob does not open with this key under this name: another key, another name, or tampering."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @staticmethod
    def new_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, name: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, name.encode())

    def open(self, name: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], name.encode())
        except (InvalidTag, ValueError):
            raise SealBroken(name) from None
