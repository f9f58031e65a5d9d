"""MSAL's token cache on disk, for user credentials: a restart needs no new sign-in.

The file holds refresh tokens, so it is written the careful way: a temporary file in the same
directory (created 0600, never wider), ``fsync``, ``rename`` over the old one, ``fsync`` of the
directory. A crash at any moment leaves either the old or the new file, never half of one.

``bearerd login`` (another process) and the daemon share the file. An exclusive ``flock`` on a
sibling lock file serialises them; whoever holds it first reloads the file if someone else
changed it, so the daemon picks up a fresh sign-in and a login doesn't lose the daemon's rotated
refresh tokens.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import structlog

from bearerd.files import write_atomically
from bearerd.tokens.keyring import MAGIC, PLAIN, CacheUndecryptable, KeyringSealer, KeyringUnavailable

log = structlog.get_logger("bearerd.cache")


def cache_path(state_dir: Path, credential: str) -> Path:
    """Where a user credential's cache lives in the state directory."""
    return state_dir / f"{credential}.msal-cache.json"


class PersistentTokenCache(msal.SerializableTokenCache):  # type: ignore[misc]
    """A SerializableTokenCache backed by one file, safe across processes and crashes."""

    def __init__(self, path: Path, sealer: KeyringSealer | None = None, protection: str = PLAIN) -> None:
        super().__init__()
        self.path = path
        self._sealer = sealer  # encryption at rest (cacheprotect.py), or None for the plain 0600 file
        self.sealed_elsewhere: str | None = None  # why the file can't be read here (sealed, no keyring)
        self.protection = protection  # for the start-up log line
        self._lock_path = path.with_name(path.name + ".lock")
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file we last read or wrote
        self._thread_lock = threading.Lock()

    def _ensure_directory(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self, prefer_ours: bool = False) -> Iterator[None]:
        """Hold the cross-process lock, with the file's newest content merged in.

        On a conflict the file wins (it holds the newest rotated refresh token), except with
        ``prefer_ours`` — a fresh sign-in, which is newer than anything in the file.
        """
        self._ensure_directory()
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._reload_if_changed(prefer_ours)
                yield
                self._save_if_changed()
            finally:
                os.close(fd)  # releases the flock

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _reload_if_changed(self, prefer_ours: bool = False) -> None:
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return
        changed = bool(getattr(self, "has_state_changed", False))
        raw = self.path.read_bytes()
        if self._sealer is None and raw.startswith(MAGIC):
            # Sealed by a process that could reach the keyring (e.g. `bearerd login` in a desktop
            # session); this one can't. Never overwrite it: that would destroy the sign-in and
            # silently downgrade it to plain text.
            self.sealed_elsewhere = (
                f"{self.path} is encrypted with a key kept in the keyring, which this process can't reach "
                "(run bearerd where the keyring is unlocked, e.g. in the user's session, or delete the file "
                "and sign in again to keep it unencrypted)"
            )
            self._seen = stamp
            self.has_state_changed = False
            return
        self.sealed_elsewhere = None
        try:
            data = json.loads(self._sealer.open(raw) if self._sealer is not None else raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            # Can't happen with atomic writes; if the file was edited by hand, say so and start empty.
            log.error("cache.unreadable", path=str(self.path))
            data = {}
        except (CacheUndecryptable, KeyringUnavailable):
            log.error(
                "cache.undecryptable",
                path=str(self.path),
                hint="the keyring no longer holds this file's key; run `bearerd login` again",
            )
            data = {}
        self._merge(data, incoming_wins=not prefer_ours)
        self.has_state_changed = changed and prefer_ours
        self._seen = stamp

    def _merge(self, incoming: dict[str, Any], *, incoming_wins: bool) -> None:
        ours = json.loads(self.serialize() or "{}")
        merged: dict[str, Any] = {}
        for section in set(ours) | set(incoming):
            first, second = (ours, incoming) if incoming_wins else (incoming, ours)
            merged[section] = {**(first.get(section) or {}), **(second.get(section) or {})}
        self.deserialize(json.dumps(merged))

    def export_text(self) -> str:
        """The cache as it is in the file now (to share it with a fleet)."""
        with self.locked():
            return str(self.serialize())

    def merge_shared(self, text: str, written_at: float) -> None:
        """Take in a fleet's copy, written at ``written_at`` (wall clock).

        It holds the fleet's newest rotated refresh token, so it wins conflicts — unless this
        file changed after it was written: a `bearerd login` here (say, after the user's sign-in
        was revoked) must not be undone by the fleet's older copy.
        """
        try:
            incoming = json.loads(text)
        except json.JSONDecodeError:
            log.error("cache.shared_unreadable")
            return
        with self.locked():
            stamp = self._stamp()
            local_is_newer = stamp is not None and stamp[0] / 1e9 > written_at
            self._merge(incoming, incoming_wins=not local_is_newer)
            self.has_state_changed = True

    def _save_if_changed(self) -> None:
        if not self.has_state_changed:
            return
        if self.sealed_elsewhere is not None:
            log.error("cache.not_written", path=str(self.path), reason="sealed with a keyring this process can't reach")
            self.has_state_changed = False
            return
        data = self.serialize().encode()
        if self._sealer is not None:
            try:
                data = self._sealer.seal(data)
            except KeyringUnavailable as exc:  # the keyring refused to keep a new key: write nothing
                log.error("cache.not_written", path=str(self.path), reason=str(exc))
                return
        write_atomically(self.path, data)
        self.has_state_changed = False
        self._seen = self._stamp()

    def accounts_snapshot(self) -> list[dict[str, Any]]:
        """Accounts in the file now (for `bearerd login` output and readiness)."""
        with self.locked():
            return list(self.search(msal.TokenCache.CredentialType.ACCOUNT))
