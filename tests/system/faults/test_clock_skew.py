"""Tokens whose iat/nbf/exp are off by minutes: bearerd times them by expires_in, so no refresh loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import TEST_APPS, render_toml, stack_tables
from support.providers import clocked


@pytest.mark.parametrize("skew_s", [-900, 900])
async def test_skewed_tokens_are_used_without_a_refresh_loop(tmp_path: Path, skew_s: int) -> None:
    async with EmulatorStack(tmp_path / "e", apps=TEST_APPS) as stack:
        stack.entra.tokens.clock_skew_s = skew_s
        path = tmp_path / "c.toml"
        path.write_text(render_toml(stack_tables(stack)))
        async with clocked(load_config(path)) as (provider, clock):
            token = await provider.fetch()
            status = provider.status()
            assert status.expires_in_s is not None and 3500 < status.expires_in_s <= 3600
            # Until the refresh point (half the lifetime the identity provider gave, whatever the
            # token's own skewed exp/nbf say), one token and no call: no refresh loop.
            for _ in range(17):
                await clock.advance(100)
                for _ in range(100):
                    assert provider.current() == token
            assert stack.entra.token_calls(stack.secret_client_id) == 1
            assert clock.pending() and clock.pending()[0] > 0  # the refresh is still ahead
