"""A credential's secret or certificate kept current: rotated files and Key Vault versions picked up.

The configuration reads secrets once, at load time (so a bad one stops the daemon at start). A
running daemon must also follow rotations that need no restart — a Kubernetes secret or CSI mount
swapped underneath it, a new version in Key Vault. A ``MaterialSource`` answers one question
before each acquisition, "is there newer material than what the MSAL app was built with?":

* ``FileMaterial`` compares each file's (mtime, size, inode) with what it last read — a few
  ``stat`` calls, no read, when nothing changed. On a change it parses everything first and
  swaps only on success: a half-written or empty file never replaces a good credential; the
  refusal is logged once per state of the files, not at every acquisition.
* ``VaultMaterial`` fetches from Key Vault (``keyvault.py``) on first use, every
  ``keyvault_refresh_s``, and when Entra refused the current secret (``stale``: it may have been
  rotated in the vault) — at most every ``STALE_REFETCH_MIN_S``, so a wrong secret can't turn into
  a Key Vault storm. A failed fetch keeps the material it has.

``LocalSource`` applies what they return (``CredentialClient.use_secrets``: the MSAL app is rebuilt
with it). Clock and ``stat`` are injectable, so both run under the unit tests' fake clock.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import structlog

from bearerd.config.schema import Credential
from bearerd.config.secrets import CredentialSecrets, reread_files, watched_files
from bearerd.errors import first_line
from bearerd.tokens.results import IdentityProviderError

log = structlog.get_logger("bearerd.tokens")

STALE_REFETCH_MIN_S = 30.0
FileState = tuple[tuple[int, int, int] | None, ...]  # per file: (mtime_ns, size, inode), None when missing
Stat = Callable[[Path], os.stat_result]


class MaterialSource(Protocol):
    async def refresh(self, stale: bool) -> CredentialSecrets | None:
        """Newer material than the last returned, or None. ``stale``: the identity provider just refused
        the current one. Raises ``IdentityProviderError`` only when there is no usable material at all."""
        ...


class FileMaterial:
    """The files of a secret or certificate credential, re-read when they change."""

    def __init__(
        self,
        name: str,
        cred: Credential,
        current: CredentialSecrets,
        *,
        stat: Stat = os.stat,
        reread: Callable[[Credential, CredentialSecrets], CredentialSecrets] = reread_files,
    ) -> None:
        self.name = name
        self._cred = cred
        self._files = watched_files(cred)
        self._stat = stat
        self._reread = reread
        self._current = current
        self._seen = self._state()  # the state the current material was read in (close enough: just loaded)
        self._refused: FileState | None = None
        self._lock = threading.Lock()
        self.reads = 0  # re-reads attempted (tests)

    def _state(self) -> FileState:
        out: list[tuple[int, int, int] | None] = []
        for path in self._files:
            try:
                st = self._stat(path)
            except OSError:
                out.append(None)
                continue
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)

    def check(self) -> CredentialSecrets | None:
        """Blocking, cheap: the new material when a file changed and parses, else None."""
        with self._lock:
            state = self._state()
            if state == self._seen or state == self._refused:
                return None
            self.reads += 1
            try:
                fresh = self._reread(self._cred, self._current)
            except ValueError as exc:
                # Half-written, emptied, a key that doesn't match yet: keep what works, say so once.
                self._refused = state
                log.warning(
                    "credential.rotation_refused",
                    credential=self.name,
                    error=first_line(exc),
                    keeping="the material read before",
                )
                return None
            self._seen, self._refused = state, None
            if fresh == self._current:
                return None  # touched, not changed
            self._current = fresh
            log.info("credential.rotated", credential=self.name, source="files", files=[str(p) for p in self._files])
            return fresh

    async def refresh(self, stale: bool) -> CredentialSecrets | None:
        return await asyncio.to_thread(self.check)


class VaultMaterial:
    """A secret or certificate held in Key Vault, fetched through ``fetch`` (``keyvault.VaultFetcher``)."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[], Awaitable[CredentialSecrets]],
        refresh_s: float,
        *,
        current: CredentialSecrets | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._clock = clock
        self._current = current
        self._fetched_at = clock() if current is not None else float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def refresh(self, stale: bool) -> CredentialSecrets | None:
        async with self._lock:
            age = self._clock() - self._fetched_at
            if self._current is not None and age < self._refresh_s and not (stale and age >= STALE_REFETCH_MIN_S):
                return None
            self.fetches += 1
            try:
                fresh = await self._fetch()
            except IdentityProviderError as exc:
                if self._current is None:
                    raise
                # Keep the secret we have; try again at the next acquisition after the stale interval.
                self._fetched_at = self._clock() - max(0.0, self._refresh_s - STALE_REFETCH_MIN_S)
                log.warning("keyvault.fetch_failed", credential=self.name, error=str(exc), keeping="the fetched secret")
                return None
            self._fetched_at = self._clock()
            if fresh == self._current:
                return None
            first, self._current = self._current is None, fresh
            log.info("keyvault.fetched" if first else "credential.rotated", credential=self.name, source="keyvault")
            return fresh
