"""Where a provider's tokens come from: one interface, two implementations (local and fleet).

``TokenProvider`` owns timing (single flight, early refresh, backoff); a ``TokenSource`` owns the
one question of *how* a new token is obtained. ``LocalSource`` asks MSAL, in a worker thread
because MSAL blocks; ``FleetSource`` (``fleet.py``) first looks at what the other replicas share
and takes turns with them, falling back to its ``LocalSource`` when Redis can't help.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal, Protocol

from bearerd.logs import REDACTOR
from bearerd.tokens.identity import CredentialClient
from bearerd.tokens.results import AcquiredToken, IdentityProviderError

if TYPE_CHECKING:
    from bearerd.tokens.material import MaterialSource

# Where a token came from: MSAL here ("local"), another replica's record ("shared"), or MSAL here
# on behalf of the fleet ("fleet").
Origin = Literal["local", "shared", "fleet"]


class TokenSource(Protocol):
    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        """A new token (never ``avoid``, a token the upstream refused); with ``claims``, one that
        satisfies a claims challenge. Raises ``IdentityProviderError``."""
        ...

    def stamp(self) -> object:
        """The credential's files as they are now (size, time, inode): a change can change the
        identity provider's answer. Cheap (``stat`` calls), safe on the event loop."""
        ...

    async def forget_failures(self) -> None:
        """Lift failures shared with others (a fleet's), because something changed here."""
        ...

    async def failure_lifted(self) -> bool:
        """Whether a failure this source shared with others was lifted elsewhere (a fleet's)."""
        ...


class LocalSource:
    """MSAL, for this process alone — with the credential's material brought up to date first
    (``material.py``: rotated files, Key Vault), and once more when Entra refuses it as stale."""

    def __init__(
        self, client: CredentialClient, scopes: tuple[str, ...], material: MaterialSource | None = None
    ) -> None:
        self.client = client
        self.scopes = scopes
        self.material = material

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        # ``avoid`` needs no care here: every MSAL call fetches a new token from the identity provider.
        await self._update(stale=False)
        try:
            return await asyncio.to_thread(self.client.acquire, self.scopes, claims), "local"
        except IdentityProviderError as exc:
            # A secret rotated at its source (the vault) before we saw it: fetch it and try once more.
            if exc.code != "invalid_client" or not await self._update(stale=True):
                raise
        return await asyncio.to_thread(self.client.acquire, self.scopes, claims), "local"

    async def _update(self, stale: bool) -> bool:
        if self.material is None:
            return False
        fresh = await self.material.refresh(stale)
        if fresh is not None:
            REDACTOR.register(fresh.values())  # a secret from the vault or a rotated file: never in a log line
            self.client.use_secrets(fresh)
        return fresh is not None

    def stamp(self) -> object:
        return self.client.files_stamp()

    async def forget_failures(self) -> None:
        return None  # nothing shared

    async def failure_lifted(self) -> bool:
        return False  # nothing shared
