"""A token provider on a fake clock that asks the real emulator: time-dependent behaviour against
a real identity provider (refresh points, backoff, Retry-After, skewed clocks) without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bearerd.config.loader import Config
from bearerd.tokens.identity import CredentialClient
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.sources import LocalSource
from support.clock import FakeClock


@asynccontextmanager
async def clocked(config: Config, route: str = "secretapi") -> AsyncIterator[tuple[TokenProvider, FakeClock]]:
    """A provider of ``route`` that asks the real emulator, on a fake clock: time (refresh points,
    backoff, Retry-After) passes when the test says, so no test waits for it."""
    rs = config.settings.routes[route]
    client = CredentialClient.for_config(config, rs.credential)
    scopes = config.settings.route_scopes(route)
    clock = FakeClock()
    provider = TokenProvider(
        LocalSource(client, scopes), rs.credential, scopes, clock=clock, call_later=clock.call_later
    )
    try:
        yield provider, clock
    finally:
        await provider.close()
        client.close()
