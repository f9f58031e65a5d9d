"""Where a provider's tokens come from: one interface, two implementations (local and fleet).

``TokenProvider`` owns timing (single flight, early refresh, backoff); a ``TokenSource`` owns the
one question of *how* a new token is obtained. ``LocalSource`` asks MSAL, in a worker thread
because MSAL blocks; ``FleetSource`` (``fleet.py``) first looks at what the other replicas share
and takes turns with them, falling back to its ``LocalSource`` when Redis can't help.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from bearerd.tokens.identity import CredentialClient
from bearerd.tokens.results import AcquiredToken

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
    """MSAL, for this process alone."""

    def __init__(self, client: CredentialClient, scopes: tuple[str, ...]) -> None:
        self.client = client
        self.scopes = scopes

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        # ``avoid`` needs no care here: every MSAL call fetches a new token from the identity provider.
        return await asyncio.to_thread(self.client.acquire, self.scopes, claims), "local"

    def stamp(self) -> object:
        return self.client.files_stamp()

    async def forget_failures(self) -> None:
        return None  # nothing shared

    async def failure_lifted(self) -> bool:
        return False  # nothing shared
