"""Stand-ins for bearerd's own interfaces (never for MSAL or aiohttp): a scripted ``TokenSource``.

The token state machines are tested against these under a ``FakeClock``; what MSAL and the
identity provider really do is tested against the emulator, in the integration tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from bearerd.tokens.results import AcquiredToken, IdentityProviderError
from bearerd.tokens.sources import Origin


@dataclass
class SourceCall:
    claims: str | None
    avoid: str | None


@dataclass
class ScriptedSource:
    """Answers acquisitions from a script: tokens (``expires_in`` seconds) or failures, in order.

    With ``gate`` set, each acquisition waits for it, so a test can hold many callers in flight.
    """

    lifetime_s: float = 3600.0
    refresh_in_s: float | None = None
    script: deque[IdentityProviderError | None] = field(default_factory=deque)  # None: succeed
    gate: asyncio.Event | None = None
    calls: list[SourceCall] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    files: int = 0  # the credential files' stamp: a test changes it like a login or a rotation would
    forgotten: int = 0  # how often a provider asked to lift shared failures
    lifted: bool = False  # whether a shared failure was lifted elsewhere (a fleet's login or reload)

    def fail(self, *errors: IdentityProviderError) -> None:
        self.script.extend(errors)

    def stamp(self) -> object:
        return self.files

    async def forget_failures(self) -> None:
        self.forgotten += 1

    async def failure_lifted(self) -> bool:
        return self.lifted

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        self.calls.append(SourceCall(claims, avoid))
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.script.popleft() if self.script else None
        if outcome is not None:
            raise outcome
        value = f"token-{len(self.issued) + 1}" + (f"+claims:{claims}" if claims else "")
        self.issued.append(value)
        return AcquiredToken(value=value, expires_in=self.lifetime_s, refresh_in=self.refresh_in_s), "local"
