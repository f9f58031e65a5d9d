"""A fleet of daemons sharing tokens through a real redis-server: one identity-provider call for all.

Each replica is a full ``Daemon`` with its own listeners, providers and Redis connection; they
share nothing but Redis (and the emulator, which counts the token-endpoint calls and verifies
every token at the App Proxy).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bearerd.config.loader import Config, load_config
from bearerd.daemon.daemon import Daemon
from bearerd.emulator import EmulatorStack
from bearerd.errors import ConfigError, TokenUnavailable
from bearerd.tokens.aead import SealBroken, Sealer
from bearerd.tokens.fleet import FleetSource
from support.configs import TEST_APPS, render_toml, stack_tables, user_config
from support.processes import run_login
from support.redis_server import RedisServer
from support.waiting import eventually
from support.wire import log_events


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def fleet_settings(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path, name: str, **cache: object
) -> Config:
    tables = stack_tables(stack)
    del tables["routes.otherapi"], tables["credentials.emu-cert"]
    tables["cache"] = redis_server.cache_table(**cache)
    path = tmp_path / f"{name}.toml"
    path.write_text(f'state_dir = "{tmp_path / name}"\n' + render_toml(tables))
    return load_config(path)


async def start_replicas(exits: AsyncExitStack, settings: list[Config]) -> list[Daemon]:
    """Start them all at once, as a fleet's pods come up together."""
    daemons = [Daemon(s) for s in settings]
    await asyncio.gather(*(exits.enter_async_context(d) for d in daemons))
    return daemons


@asynccontextmanager
async def short_lived_fleet(
    tmp_path: Path, redis_server: RedisServer, lifetime: int, replicas: int
) -> AsyncIterator[tuple[EmulatorStack, list[Daemon], aiohttp.ClientSession]]:
    """An emulator issuing tokens that live ``lifetime`` seconds, and a fleet of replicas using it."""
    async with EmulatorStack(tmp_path / "emulator", apps=TEST_APPS, token_lifetime_s=lifetime) as stack:
        settings = [fleet_settings(stack, redis_server, tmp_path, f"r{i}") for i in range(replicas)]
        async with (
            AsyncExitStack() as exits,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):
            yield stack, await start_replicas(exits, settings), session


def url(daemon: Daemon, target: str = "/secretapi/api/status") -> str:
    host, port = daemon.listeners.listen_addresses[0]
    return f"http://{host}:{port}{target}"


async def hammer(session: aiohttp.ClientSession, daemons: list[Daemon], per_replica: int) -> list[int]:
    async def one(d: Daemon) -> int:
        async with session.get(url(d)) as resp:
            await resp.read()
            return resp.status

    return await asyncio.gather(*(one(d) for d in daemons for _ in range(per_replica)))


async def test_twenty_replicas_cold_start_make_one_token_call(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = [fleet_settings(stack, redis_server, tmp_path, f"r{i}") for i in range(20)]
    async with AsyncExitStack() as exits, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        daemons = await start_replicas(exits, settings)
        statuses = await hammer(session, daemons, per_replica=25)
        assert statuses == [200] * 500
        assert stack.entra.token_calls(stack.secret_client_id) == 1
        # Every replica serves the one token the fleet acquired, and each verified at the App Proxy.
        seen = {r.claims["uti"] for r in stack.apps["secretapi"].requests_seen}
        assert len(seen) == 1
        metrics = [d.metrics for d in daemons]
        shared = sum(m.token_acquisitions.labels("emu-secret", "shared")._value.get() for m in metrics)
        assert shared == 19


async def test_steady_state_is_one_call_per_refresh_window_for_the_fleet(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    lifetime = 3  # refreshed at half-life: one window every 1.5 s
    async with short_lived_fleet(tmp_path, redis_server, lifetime, replicas=20) as (stack, daemons, session):
        started = time.monotonic()
        statuses: list[int] = []
        while time.monotonic() - started < 6:  # four windows
            statuses += await hammer(session, daemons, per_replica=1)
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        assert set(statuses) == {200}
        windows = elapsed / (lifetime / 2)
        calls = stack.entra.token_calls(stack.secret_client_id)
        # One per window for the whole fleet (plus the cold start), where 20 replicas alone make 20.
        assert calls <= windows + 2, (calls, windows)
        assert calls >= 3  # the tokens really were refreshed, by someone, while the fleet ran


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def test_tokens_at_rest_in_redis_are_encrypted(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = fleet_settings(stack, redis_server, tmp_path, "r0")
    async with Daemon(settings) as daemon:
        assert await daemon.wait_ready(within_s=10)
    client = redis_server.client()
    try:
        keys = [_raw(k) for k in await client.keys("bearerd-test:*")]
        # GET, not DUMP: DUMP may LZF-compress a plaintext value and hide it from this check.
        dump = b"".join([_raw(await client.get(k) or b"") for k in keys])
    finally:
        await client.aclose()
    assert any(k.endswith(b":token") for k in keys)
    token = stack.entra.issued_tokens[-1]
    for piece in (token.encode(), token.split(".")[1][:24].encode(), b"eyJ"):
        assert piece not in dump  # not the token, nor its claims, nor anything that looks like a JWT


async def test_a_wrong_key_is_a_clear_startup_error(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with Daemon(fleet_settings(stack, redis_server, tmp_path, "r0")):
        pass  # the fleet's records now use the first key
    other_key = tmp_path / "other.key"
    other_key.write_text("A" * 43 + "=")
    other_key.chmod(0o600)
    settings = fleet_settings(stack, redis_server, tmp_path, "r1", encryption_key_file=str(other_key))
    with pytest.raises(ConfigError) as caught:
        async with Daemon(settings):
            pass
    message = str(caught.value)
    assert "[cache] encryption_key_file" in message and "same key file" in message
    assert redis_server.password not in message


async def test_a_dead_holder_is_replaced_after_the_lock_ttl(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = fleet_settings(stack, redis_server, tmp_path, "r0", lock_ttl_s=1.5)
    client = redis_server.client()
    try:
        # A replica took the lock and died: nobody renews it, nobody publishes a token.
        record_key = [k async for k in client.scan_iter("*")]
        assert record_key == []
        async with Daemon(settings) as probe:
            source = probe.providers.for_route("secretapi").source
            assert isinstance(source, FleetSource)
            lock_key = source.lock_key
        await client.delete(*[k async for k in client.scan_iter("bearerd-test:*:token")])
        calls_before = stack.entra.token_calls(stack.secret_client_id)
        await client.set(lock_key, "dead-replica", px=1500)
        started = time.monotonic()
        async with Daemon(settings) as daemon:
            assert await daemon.wait_ready(within_s=10)
            waited = time.monotonic() - started
        assert stack.entra.token_calls(stack.secret_client_id) == calls_before + 1
        assert waited >= 1.0  # it waited for the holder rather than calling at once
    finally:
        await client.aclose()


async def test_redis_down_at_start_the_replica_works_alone(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path, log_stream: io.StringIO
) -> None:
    await redis_server.stop()
    settings = fleet_settings(stack, redis_server, tmp_path, "r0")
    async with Daemon(settings) as daemon, aiohttp.ClientSession() as session:
        async with session.get(url(daemon)) as resp:
            assert resp.status == 200
        assert daemon.fleet is not None and daemon.fleet.connected is False
        scrape = daemon.metrics.registry.get_sample_value("bearerd_fleet_connected")
        assert scrape == 0
        await redis_server.start()
        for _ in range(100):
            if daemon.fleet.connected:
                break
            await asyncio.sleep(0.05)
        assert daemon.fleet.connected and daemon.metrics.registry.get_sample_value("bearerd_fleet_connected") == 1
    events = [e["event"] for e in log_events(log_stream)]
    assert events.count("fleet.unavailable") == 1 and "fleet.rejoined" in events
    assert all(redis_server.password not in line for line in log_stream.getvalue().splitlines())


async def test_killing_redis_under_load_fails_no_request(tmp_path: Path, redis_server: RedisServer) -> None:
    lifetime = 3
    async with short_lived_fleet(tmp_path, redis_server, lifetime, replicas=5) as (stack, daemons, session):
        statuses: list[int] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                statuses.extend(await hammer(session, daemons, per_replica=2))

        loader = asyncio.create_task(load())
        await eventually(lambda: len(statuses) >= 50, what="the load running")
        await redis_server.stop()  # mid-window: refreshes now happen alone
        calls_at_kill = stack.entra.token_calls(stack.secret_client_id)
        await eventually(lambda: not any(d.fleet is not None and d.fleet.connected for d in daemons), what="all alone")
        # Every replica refreshes alone now (a window passes): five calls, one each, while requests flow.
        await eventually(
            lambda: stack.entra.token_calls(stack.secret_client_id) >= calls_at_kill + len(daemons),
            within_s=lifetime * 5,
            what="the replicas refreshing alone",
        )
        await redis_server.start()
        for _ in range(100):
            if all(d.fleet is not None and d.fleet.connected for d in daemons):
                break
            await asyncio.sleep(0.05)
        rejoined = all(d.fleet is not None and d.fleet.connected for d in daemons)
        calls_at_rejoin = stack.entra.token_calls(stack.secret_client_id)
        await asyncio.sleep(lifetime * 1.2)
        stop.set()
        await loader
        assert rejoined
        assert len(statuses) > 200 and set(statuses) == {200}
        # Back in the fleet, the replicas share again: not one call each per window.
        assert stack.entra.token_calls(stack.secret_client_id) - calls_at_rejoin <= 4  # alone: ~12


async def test_one_failure_is_shared_not_repeated_by_every_replica(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    from bearerd.emulator.entra import Fault

    stack.entra.faults.set(Fault(status=503, retry_after_s=2))
    settings = [fleet_settings(stack, redis_server, tmp_path, f"r{i}") for i in range(10)]
    async with AsyncExitStack() as exits, aiohttp.ClientSession() as session:
        daemons = await start_replicas(exits, settings)
        providers = [d.providers.for_route("secretapi") for d in daemons]
        # Every replica's warm-up has failed: one asked, the others adopted its shared failure.
        await eventually(lambda: all(p.status().last_error is not None for p in providers), what="the warm-ups")
        statuses = await hammer(session, daemons, per_replica=1)
        assert set(statuses) == {503}
        assert stack.entra.token_calls(stack.secret_client_id) == 1
        stack.entra.faults.clear()
        for _ in range(40):  # callers keep coming; each replica retries once its backoff is over
            statuses = await hammer(session, daemons, per_replica=1)
            if set(statuses) == {200}:
                break
            await asyncio.sleep(0.25)
        assert set(statuses) == {200}
        assert stack.entra.token_calls(stack.secret_client_id) == 2


def _config_problem(tmp_path: Path, cache: dict[str, Any]) -> str:
    path = tmp_path / "c.toml"
    path.write_text(
        render_toml(
            {
                "cache": cache,
                "credentials.a": {"kind": "managed_identity"},
                "routes.r": {
                    "match": {"path_prefix": "/r/"},
                    "upstream": "https://r.example/",
                    "credential": "a",
                    "scopes": ["https://r.example/.default"],
                },
            }
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_cache_config_errors_name_the_field_and_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("too short")
    key.chmod(0o600)
    assert "url" in _config_problem(tmp_path, {"backend": "redis", "encryption_key_file": str(key)})
    problem = _config_problem(tmp_path, {"backend": "redis", "url": "redis://127.0.0.1:6379/0"})
    assert "[cache]" in problem and "openssl rand -base64 32" in problem
    problem = _config_problem(tmp_path, {"backend": "redis", "url": "redis://127.0.0.1/0", "encryption_key_file": "k"})
    assert "[cache]" in problem and "32 random bytes" in problem
    problem = _config_problem(
        tmp_path, {"backend": "redis", "url": "redis://:hunter2@127.0.0.1/0", "encryption_key_file": "k"}
    )
    assert "password_file" in problem and "hunter2" not in problem
    assert "not a setting" in _config_problem(tmp_path, {"backend": "redis", "password": "x"})


def user_replica(stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path, name: str) -> tuple[Path, Config]:
    home = tmp_path / name
    home.mkdir()
    config, _ = user_config(stack, home)
    config.write_text(config.read_text() + "\n" + render_toml({"cache": redis_server.cache_table()}))
    return config, load_config(config)


async def drop_shared_tokens(redis_server: RedisServer) -> None:
    """Forget the shared access tokens, so the next replica must redeem a refresh token itself."""
    client = redis_server.client()
    try:
        await client.delete(*[k async for k in client.scan_iter("bearerd-test:*:token")])
    finally:
        await client.aclose()


async def test_one_sign_in_serves_the_fleet(stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path) -> None:
    config_a, settings_a = user_replica(stack, redis_server, tmp_path, "a")
    _, settings_b = user_replica(stack, redis_server, tmp_path, "b")
    assert (await run_login(stack, config_a))[0] == 0  # the operator signs in on one machine only
    async with Daemon(settings_a) as a:
        assert await a.wait_ready(within_s=10)
    await drop_shared_tokens(redis_server)
    async with Daemon(settings_b) as b, aiohttp.ClientSession() as session:
        assert await b.wait_ready(within_s=10)
        async with session.get(url(b)) as resp:
            assert resp.status == 200
    claims = stack.apps["secretapi"].requests_seen[-1].claims
    assert claims["upn"] == stack.user
    grants = [c.grant_type for c in stack.entra.calls if c.client_id == stack.public_client_id]
    assert grants.count("refresh_token") == 2  # A's first token, then B's, from the rotated refresh token
    client = redis_server.client()
    try:  # the shared MSAL cache (refresh tokens) is sealed like the access tokens
        values = [_raw(await client.get(k) or b"") async for k in client.scan_iter("bearerd-test:*")]
    finally:
        await client.aclose()
    assert any(len(v) > 500 for v in values)  # the MSAL cache is there...
    for readable in (stack.user.encode(), b"RefreshToken", b"refresh_token", b"eyJ"):
        assert all(readable not in v for v in values)  # ...and unreadable
    cache_b = settings_b.state_dir / "alice.msal-cache.json"
    assert stack.user in cache_b.read_text()  # B keeps a local copy for when Redis is away


def test_a_sealed_record_opens_only_under_its_own_name() -> None:
    sealer = Sealer(b"k" * 32)
    blob = sealer.seal("bearerd:app-a:1234:token", b"secret")
    assert sealer.open("bearerd:app-a:1234:token", blob) == b"secret"
    with pytest.raises(SealBroken):
        sealer.open("bearerd:app-b:5678:token", blob)  # moved to another credential's key: refused
    with pytest.raises(SealBroken):
        Sealer(b"j" * 32).open("bearerd:app-a:1234:token", blob)


async def test_rediss_with_a_private_ca(stack: EmulatorStack, tmp_path: Path, log_stream: io.StringIO) -> None:
    server = RedisServer(tmp_path / "redis-tls", tls=True)
    await server.start()
    try:
        trusted = fleet_settings(stack, server, tmp_path, "r0", ca_file=str(server.ca_file))
        async with Daemon(trusted) as daemon:
            assert daemon.fleet is not None and daemon.fleet.connected
            assert await daemon.wait_ready(within_s=10)
        client = server.client()
        try:
            assert [k async for k in client.scan_iter("bearerd-test:*:token")]
        finally:
            await client.aclose()
        # Without the CA the server is not trusted: the replica works alone rather than trusting it.
        untrusted = fleet_settings(stack, server, tmp_path, "r1")
        async with Daemon(untrusted) as daemon:
            assert daemon.fleet is not None and daemon.fleet.connected is False
            assert await daemon.wait_ready(within_s=10)
    finally:
        await server.stop()
    failures = [e for e in log_events(log_stream) if e["event"] == "fleet.unavailable"]
    assert failures and "certificate" in failures[0]["error"].lower()


async def test_a_new_sign_in_on_one_replica_is_not_undone_by_the_fleets_older_copy(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    config_a, settings_a = user_replica(stack, redis_server, tmp_path, "a")
    config_b, settings_b = user_replica(stack, redis_server, tmp_path, "b")
    assert (await run_login(stack, config_a))[0] == 0
    async with Daemon(settings_a) as a:
        assert await a.wait_ready(within_s=10)  # the fleet now holds A's refresh token
    stack.entra.users.revoke(stack.user)  # an admin revoked the sessions: that token is dead
    assert (await run_login(stack, config_b))[0] == 0  # the operator signs in again, on B
    await drop_shared_tokens(redis_server)
    async with Daemon(settings_b) as b:
        assert await b.wait_ready(within_s=10)  # B used its new sign-in, not the fleet's dead token
    await drop_shared_tokens(redis_server)
    async with Daemon(settings_a) as a:
        assert await a.wait_ready(within_s=10)  # and A now gets the new one through the fleet


async def test_a_credential_that_changed_identity_never_adopts_the_old_identitys_token(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with Daemon(fleet_settings(stack, redis_server, tmp_path, "old")) as old:
        assert await old.wait_ready(within_s=10)  # the fleet holds the secret client's token
    # A new config rolls out: [credentials.emu-secret] is now another app (the certificate client).
    tables = stack_tables(stack)
    del tables["routes.otherapi"]
    tables["credentials.emu-secret"] = tables.pop("credentials.emu-cert")
    tables["cache"] = redis_server.cache_table()
    path = tmp_path / "new.toml"
    path.write_text(f'state_dir = "{tmp_path / "new"}"\n' + render_toml(tables))
    async with (
        Daemon(load_config(path)) as new,
        aiohttp.ClientSession() as session,
        session.get(url(new)) as resp,
    ):
        assert resp.status == 200
    assert stack.entra.token_calls(stack.cert_client_id) == 1  # its own token, not the old app's
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == stack.cert_client_id


async def test_a_sign_in_anywhere_reaches_replicas_that_never_had_one(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    config_a, _ = user_replica(stack, redis_server, tmp_path, "a")  # where the operator signs in
    settings = [user_replica(stack, redis_server, tmp_path, name)[1] for name in ("b", "c")]
    async with AsyncExitStack() as exits:
        replicas = await start_replicas(exits, settings)  # neither has a sign-in, nor has the fleet
        first = replicas[0].providers.for_route("secretapi")
        await eventually(lambda: first.status().last_error is not None, what="the first look at the cache")
        assert not replicas[0].readiness()[0]
        code, out, _ = await run_login(stack, config_a)
        assert code == 0 and "Shared with the fleet" in out
        for replica in replicas:
            assert await replica.wait_ready(within_s=10)


async def test_a_refusal_backs_off_once_for_the_whole_fleet(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Issue 16: a refusal the identity provider will repeat backs off exponentially, and five
    replicas sharing Redis make the calls of one — each step of the backoff is one call for the
    fleet, and every replica waits the step's whole delay. Time is a fake clock for the replicas
    (it jumps: no timer runs in between) and, for Redis, the shared wait's key is expired by hand
    when its time has come."""
    from bearerd.tokens.backoff import REFUSAL_BASE_S, REFUSAL_CAP_S
    from bearerd.tokens.fleet import Fleet
    from bearerd.tokens.identity import CredentialClient
    from bearerd.tokens.provider import TokenProvider
    from bearerd.tokens.sources import LocalSource
    from support.clock import FakeClock

    stack.entra.clients[stack.secret_client_id].secret = "rotated-elsewhere"  # every replica's secret is refused
    clock = FakeClock()
    scopes = (stack.apps["secretapi"].scope,)
    async with AsyncExitStack() as exits:
        providers: list[TokenProvider] = []
        for i in range(5):
            config = fleet_settings(stack, redis_server, tmp_path, f"r{i}")
            fleet = Fleet.for_config(config)
            await fleet.start()
            exits.push_async_callback(fleet.close)
            client = CredentialClient.for_config(config, "emu-secret")
            exits.callback(client.close)
            source = fleet.source(LocalSource(client, scopes))
            provider = TokenProvider(source, "emu-secret", scopes, clock=clock, call_later=clock.call_later)
            exits.push_async_callback(provider.close)
            providers.append(provider)
        first = providers[0].source
        assert isinstance(first, FleetSource)
        redis = redis_server.client()
        exits.push_async_callback(redis.aclose)

        async def refused(provider: TokenProvider) -> float:
            with pytest.raises(TokenUnavailable) as info:
                await provider.fetch()
            assert "invalid_client" in info.value.detail
            assert info.value.retry_after is not None
            return info.value.retry_after

        for step in range(1, 5):
            waits = await asyncio.gather(*(refused(p) for p in providers))
            assert stack.entra.token_calls(stack.secret_client_id) == step  # one call per step, not five
            ceiling = min(REFUSAL_CAP_S, REFUSAL_BASE_S * 2 ** (step - 1))
            for wait in waits:  # every replica waits the fleet's backed-off delay, growing each step
                assert ceiling / 2 - 1 <= wait <= ceiling
            await redis.delete(first.failure_key)  # the shared wait is over for Redis...
            clock.now += ceiling  # ...and for the replicas: time jumps, the next requests find it over


async def test_a_new_sign_in_ends_a_refused_sign_ins_wait_on_every_replica(
    stack: EmulatorStack, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The fleet shares the revoked sign-in's refusal (one call, a wait of 30 s and more); a new
    `bearerd login` on one replica ends that wait for all of them, not only where it ran."""
    config_a, settings_a = user_replica(stack, redis_server, tmp_path, "a")
    _, settings_b = user_replica(stack, redis_server, tmp_path, "b")
    assert (await run_login(stack, config_a))[0] == 0  # shared with the fleet
    stack.entra.users.revoke(stack.user)
    async with AsyncExitStack() as exits:
        a, b = await start_replicas(exits, [settings_a, settings_b])
        providers = [d.providers.for_route("secretapi") for d in (a, b)]
        await eventually(lambda: all(p.status().last_error is not None for p in providers), what="both refused")
        refreshes = [c for c in stack.entra.calls if c.grant_type == "refresh_token"]
        assert len(refreshes) == 1  # refused once, for the fleet
        assert all((p.status().retry_in_s or 0) >= 25 for p in providers)
        code, out, _ = await run_login(stack, config_a)
        assert code == 0 and "Shared with the fleet" in out
        for replica in (a, b):
            assert await replica.wait_ready(within_s=10)
