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
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.registry import Providers
from support.configs import TEST_APPS, render_toml, stack_tables


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


async def test_refreshes_early_in_background(tmp_path: Path) -> None:
    async with EmulatorStack(tmp_path / "e", token_lifetime_s=4, apps=TEST_APPS) as stack:
        providers = Providers(settings_for(stack, tmp_path))
        try:
            provider = providers.for_route("secretapi")
            first = await provider.fetch()
            await asyncio.sleep(2.6)  # refresh at half the lifetime, with nobody asking
            assert stack.entra.token_calls(stack.secret_client_id) == 2
            second = provider.current()
            assert second is not None and second != first
        finally:
            await providers.aclose()


async def test_valid_token_served_through_outage_with_backoff(tmp_path: Path) -> None:
    async with EmulatorStack(tmp_path / "e", token_lifetime_s=6, apps=TEST_APPS) as stack:
        providers = Providers(settings_for(stack, tmp_path))
        try:
            provider = providers.for_route("secretapi")
            token = await provider.fetch()
            stack.entra.faults.set(Fault(status=500))
            deadline = time.monotonic() + 5.0  # past the refresh point (3 s), before expiry (6 s - margin)
            while time.monotonic() < deadline:
                assert provider.current() == token
                await asyncio.sleep(0.01)
            calls = stack.entra.token_calls(stack.secret_client_id)
            # 1 good + failures spaced by 0.5-1 s, 1-2 s, ...: a handful, not one per request.
            assert 2 <= calls <= 5
            assert provider.status().last_error is not None
        finally:
            await providers.aclose()


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
    assert "503" in first.value.detail or "server" in first.value.detail


async def test_429_retry_after_honoured_then_recovers(stack: EmulatorStack, providers: Providers) -> None:
    stack.entra.faults.push(Fault(status=429, retry_after_s=1), times=1)
    provider = providers.for_route("secretapi")
    with pytest.raises(TokenUnavailable) as info:
        await provider.fetch()
    assert info.value.retry_after is not None and info.value.retry_after >= 0.9
    await asyncio.sleep(info.value.retry_after)
    assert await provider.fetch()
    assert stack.entra.token_calls(stack.secret_client_id) == 2


@pytest.mark.parametrize("fault", [Fault(malformed=True), Fault(status=500), Fault(status=503), Fault(status=429)])
async def test_each_failure_kind_recovers_within_one_backoff_step(
    stack: EmulatorStack, tmp_path: Path, fault: Fault, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearerd.tokens.backoff.BACKOFF_BASE_S", 0.2)
    providers = Providers(settings_for(stack, tmp_path))
    try:
        stack.entra.faults.push(fault, times=1)
        provider = providers.for_route("secretapi")
        with pytest.raises(TokenUnavailable) as info:
            await provider.fetch()
        assert info.value.retry_after is not None
        await asyncio.sleep(0.25)  # one backoff step is 0.1-0.2 s
        assert await provider.fetch()
        assert stack.entra.token_calls(stack.secret_client_id) == 2
    finally:
        await providers.aclose()


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
        assert await providers.for_route("secretapi").fetch()
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


def test_provider_is_typed() -> None:
    assert TokenProvider.current.__doc__


async def test_certificate_without_x5c_sends_thumbprint_only(stack: EmulatorStack, providers: Providers) -> None:
    assert await providers.for_route("otherapi").fetch()
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
        assert await providers.for_route("otherapi").fetch()
        call = stack.entra.calls[-1]
        assert call.auth_method == "assertion" and call.status == 200
        assert call.assertion_header["alg"] == "PS256" and "x5t#S256" in call.assertion_header
        assert "x5c" in call.assertion_header
    finally:
        await providers.aclose()


async def test_identity_provider_too_slow_is_a_timeout(stack: EmulatorStack, tmp_path: Path) -> None:
    import socket
    import time

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
