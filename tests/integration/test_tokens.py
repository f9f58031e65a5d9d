"""TokenProvider against the real Entra emulator: single flight, early refresh, backoff, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack, Fault
from bearerd.errors import TokenUnavailable
from bearerd.tokens import backoff
from bearerd.tokens.registry import Providers
from support.configs import render_toml, stack_tables
from support.providers import clocked
from support.tokens import accepted
from support.waiting import eventually


def settings_for(stack: EmulatorStack, tmp_path: Path, **route: object) -> Config:
    path = tmp_path / "t.toml"
    path.write_text(render_toml(stack_tables(stack, **route)))
    return load_config(path)


@pytest.fixture
async def providers(stack: EmulatorStack, tmp_path: Path) -> AsyncIterator[Providers]:
    p = Providers(settings_for(stack, tmp_path))
    yield p
    await p.aclose()


async def test_thousand_concurrent_first_fetches_make_one_call(stack: EmulatorStack, providers: Providers) -> None:
    provider = providers.for_route("secretapi")
    stack.entra.faults.push(Fault(delay_s=0.3), times=1)  # keep the first call in flight while all callers arrive
    tokens = await asyncio.gather(*(provider.fetch() for _ in range(1000)))
    assert len(set(tokens)) == 1
    assert stack.entra.token_calls(stack.secret_client_id) == 1


async def test_hot_path_makes_no_calls(stack: EmulatorStack, providers: Providers) -> None:
    provider = providers.for_route("secretapi")
    token = await provider.fetch()
    calls = stack.entra.token_calls()
    for _ in range(10_000):
        assert provider.current() == token
    assert stack.entra.token_calls() == calls
    assert provider.acquisitions == 1


async def test_routes_with_same_credential_and_scopes_share_a_provider(stack: EmulatorStack, tmp_path: Path) -> None:
    tables = stack_tables(stack)
    tables["routes.again"] = dict(tables["routes.secretapi"], match={"path_prefix": "/again/"})
    path = tmp_path / "t.toml"
    path.write_text(render_toml(tables))
    providers = Providers(load_config(path))
    try:
        assert providers.for_route("again") is providers.for_route("secretapi")
        assert providers.for_route("otherapi") is not providers.for_route("secretapi")
    finally:
        await providers.aclose()


async def test_refreshes_early_in_background(stack: EmulatorStack, tmp_path: Path) -> None:
    async with clocked(settings_for(stack, tmp_path)) as (provider, clock):
        first = await provider.fetch()
        await clock.advance(stack.entra.tokens.token_lifetime_s / 2)  # refresh at half the lifetime, nobody asking
        await eventually(lambda: stack.entra.token_calls(stack.secret_client_id) == 2, what="the early refresh")
        await eventually(lambda: provider.current() != first, what="the new token in use")
        assert provider.current() is not None


async def test_valid_token_served_through_outage_with_backoff(stack: EmulatorStack, tmp_path: Path) -> None:
    async with clocked(settings_for(stack, tmp_path)) as (provider, clock):
        token = await provider.fetch()
        lifetime = stack.entra.tokens.token_lifetime_s
        stack.entra.faults.set(Fault(status=500))
        await clock.advance(lifetime / 2)  # the refresh point: the identity provider fails from here on
        await eventually(lambda: provider.status().last_error is not None, what="the failed refresh")
        for _ in range(1000):  # requests keep coming: they get the valid token, and cause no call
            assert provider.current() == token
        assert stack.entra.token_calls(stack.secret_client_id) == 2
        # Backoff timers retry in the background (1 s, 2 s, 4 s ... apart), the token served meanwhile.
        for retry in range(3, 6):
            await clock.advance(60)

            def retried(n: int = retry) -> bool:
                return stack.entra.token_calls(stack.secret_client_id) >= n

            await eventually(retried, what="a retry")
            await eventually(lambda: not provider.acquiring, what="the retry to end")
            assert provider.current() == token
        assert provider.status().last_error is not None and provider.status().has_token


async def test_no_token_and_provider_failing_is_503_with_retry_after(
    stack: EmulatorStack, providers: Providers
) -> None:
    stack.entra.faults.set(Fault(status=503, retry_after_s=3))
    provider = providers.for_route("secretapi")
    with pytest.raises(TokenUnavailable) as first:
        await provider.fetch()
    assert first.value.retry_after is not None and first.value.retry_after >= 2.5
    calls = stack.entra.token_calls()
    # Inside the backoff window nobody calls the provider again.
    for _ in range(50):
        with pytest.raises(TokenUnavailable):
            await provider.fetch()
    assert stack.entra.token_calls() == calls
    assert "identity provider failed (server_error)" in first.value.detail


async def test_429_retry_after_honoured_then_recovers(stack: EmulatorStack, tmp_path: Path) -> None:
    stack.entra.faults.push(Fault(status=429, retry_after_s=30), times=1)
    async with clocked(settings_for(stack, tmp_path)) as (provider, clock):
        with pytest.raises(TokenUnavailable) as info:
            await provider.fetch()
        assert info.value.retry_after == 30
        await clock.advance(29.9)
        with pytest.raises(TokenUnavailable):
            await provider.fetch()  # not before the identity provider said
        assert stack.entra.token_calls(stack.secret_client_id) == 1
        await clock.advance(0.1)
        assert accepted(stack.apps["secretapi"], await provider.fetch())["appid"] == stack.secret_client_id
        assert stack.entra.token_calls(stack.secret_client_id) == 2


@pytest.mark.parametrize("fault", [Fault(malformed=True), Fault(status=500), Fault(status=503), Fault(status=429)])
async def test_each_failure_kind_recovers_within_one_backoff_step(
    stack: EmulatorStack, tmp_path: Path, fault: Fault
) -> None:
    stack.entra.faults.push(fault, times=1)
    async with clocked(settings_for(stack, tmp_path)) as (provider, clock):
        with pytest.raises(TokenUnavailable) as info:
            await provider.fetch()
        assert info.value.retry_after is not None
        assert info.value.retry_after <= backoff.BACKOFF_BASE_S  # trouble: the first step is short
        await clock.advance(info.value.retry_after)  # one backoff step
        assert accepted(stack.apps["secretapi"], await provider.fetch())["appid"] == stack.secret_client_id
        assert stack.entra.token_calls(stack.secret_client_id) == 2


async def test_identity_provider_down_at_start(tmp_path: Path, stack: EmulatorStack) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tables = stack_tables(stack)
    tables["credentials.emu-secret"]["authority"] = f"https://127.0.0.1:{port}/tenant"
    path = tmp_path / "t.toml"
    path.write_text(render_toml(tables))
    providers = Providers(load_config(path))
    try:
        with pytest.raises(TokenUnavailable) as info:
            await providers.for_route("secretapi").fetch()
        assert "unreachable" in info.value.detail
    finally:
        await providers.aclose()


async def test_ca_file_wins_over_requests_ca_bundle(
    stack: EmulatorStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    # These point requests at a bundle without the emulator's CA; ca_file must still be used.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    providers = Providers(settings_for(stack, tmp_path))
    try:
        assert accepted(stack.apps["secretapi"], await providers.for_route("secretapi").fetch())
    finally:
        await providers.aclose()


async def test_wrong_scope_is_a_clear_permanent_error(stack: EmulatorStack, tmp_path: Path) -> None:
    app = stack.apps["secretapi"]
    wrong = app.app_id_uri.rstrip("/") + "/.default"  # single slash: not the registered app ID URI
    providers = Providers(settings_for(stack, tmp_path, scopes=[wrong]))
    try:
        with pytest.raises(TokenUnavailable) as info:
            await providers.for_route("secretapi").fetch()
        assert "invalid_scope" in info.value.detail
        assert info.value.retry_after is not None and info.value.retry_after >= 29
    finally:
        await providers.aclose()


async def test_certificate_without_x5c_sends_thumbprint_only(stack: EmulatorStack, providers: Providers) -> None:
    assert accepted(stack.apps["otherapi"], await providers.for_route("otherapi").fetch())["appidacr"] == "2"
    call = stack.entra.calls[-1]
    assert call.assertion_header["alg"] == "RS256" and "x5t" in call.assertion_header
    assert "x5c" not in call.assertion_header


async def test_certificate_with_x5c_uses_sha256_thumbprint(stack: EmulatorStack, tmp_path: Path) -> None:
    tables = stack_tables(stack)
    tables["credentials.emu-cert"]["send_x5c"] = True
    path = tmp_path / "t.toml"
    path.write_text(render_toml(tables))
    providers = Providers(load_config(path))
    try:
        assert accepted(stack.apps["otherapi"], await providers.for_route("otherapi").fetch())["appidacr"] == "2"
        call = stack.entra.calls[-1]
        assert call.auth_method == "assertion" and call.status == 200
        assert call.assertion_header["alg"] == "PS256" and "x5t#S256" in call.assertion_header
        assert "x5c" in call.assertion_header
    finally:
        await providers.aclose()


async def test_identity_provider_too_slow_is_a_timeout(stack: EmulatorStack, tmp_path: Path) -> None:
    import socket

    # A black hole: the kernel accepts the connection, nobody ever answers (not even the TLS handshake).
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        tables = stack_tables(stack)
        tables["credentials.emu-secret"].update(
            authority=f"https://127.0.0.1:{hole.getsockname()[1]}/tenant", timeout_s=0.5, connect_timeout_s=0.5
        )
        path = tmp_path / "t.toml"
        path.write_text(render_toml(tables))
        providers = Providers(load_config(path))
        try:
            started = time.monotonic()
            with pytest.raises(TokenUnavailable) as info:
                await providers.for_route("secretapi").fetch()
            assert time.monotonic() - started < 5
            assert "timed out" in info.value.detail
        finally:
            await providers.aclose()
