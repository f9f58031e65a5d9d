"""A fleet of bearerd replicas sharing tokens through Redis, so it asks Entra as often as one daemon.

Entra throttles token issuance per application; a fleet of sidecars that each acquire their own
tokens multiplies the load, and a fleet's cold start becomes a burst. With ``[cache] backend =
"redis"``, replicas share one record per (credential, scopes) and take turns to refresh it:

* **Shared record.** ``{token, expires_at, refresh_at}`` (wall clock), encrypted. A replica that
  needs a token first looks there; one that is not yet due for refresh is adopted as it is.
* **Fleet-wide single flight.** Otherwise the replica takes a lock (``SET NX PX``) holding a random
  id; while it works a task renews the TTL, and it releases only its own lock (compare-and-delete
  in Lua). The others poll the record with jitter until the holder publishes the new token. A
  holder that dies stops renewing: its lock expires after ``lock_ttl_s`` and another takes over.
* **Shared failure.** A holder refused or throttled by the identity provider writes the error (no
  secret in it) for the backed-off delay (``backoff.py``), counting the fleet's consecutive
  failures in Redis, so the waiting replicas back off with it — and the next holder's wait grows
  from the fleet's count — instead of each asking again: N replicas make the calls of one. A
  replica's local trouble (network path, files) is not shared.
* **Per identity.** Keys carry a fingerprint of the credential's identity (kind, authority, app,
  user), so replicas on an old and a new config never exchange tokens of different apps.
* **Encryption at rest.** AES-256-GCM with the fleet key; the Redis key name is the associated
  data, so a record moved to another key (another credential or scope) fails to decrypt rather
  than sending one app's token to another's upstream.
* **Degrade, don't die.** Any Redis failure switches the replica to local acquisition (logged
  once, ``bearerd_fleet_connected`` set to 0); a monitor pings until Redis answers and rejoins.
  Requests never wait on Redis: the hot path reads the in-memory token as before.

``Fleet`` is the connection (health, key check, primitives); ``FleetSource`` is one provider's
place in it and runs the protocol above; the MSAL cache of user credentials travels with the
record (``fleet_signin.py``), so one ``bearerd login`` serves the whole fleet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bearerd.config.loader import Config
from bearerd.config.schema import CacheSettings
from bearerd.errors import ConfigError, first_line
from bearerd.tokens import backoff
from bearerd.tokens.aead import SealBroken, Sealer
from bearerd.tokens.fleet_signin import SharedSignIn, identity_fingerprint
from bearerd.tokens.results import AcquiredToken, IdentityProviderError, SignInRequired
from bearerd.tokens.sources import LocalSource, Origin

log = structlog.get_logger("bearerd.fleet")

KEY_CHECK_PLAINTEXT = b"bearerd fleet key check v1"
POLL_MIN_S = 0.05
POLL_MAX_S = 0.15
MONITOR_DOWN_S = 1.0  # how often a replica cut off from Redis tries it again
MONITOR_UP_S = 5.0
FAILURE_SHARE_MIN_S = 1.0
FAILURE_SHARE_MAX_S = 3600.0  # a Retry-After is honoured in full, up to an hour
# The fleet's count of consecutive failures outlives the wait it set by this much, then starts over.
STREAK_KEEP_S = backoff.REFUSAL_CAP_S
# Failures of this replica's own making (network path, local files, a crash): not shared.
LOCAL_FAILURES = frozenset({"timeout", "unreachable", "http", "assertion_file", "bug"})

# Release or renew the lock only if it is still ours: a holder that stalled past its TTL must not
# delete or extend the lock another replica has taken since.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


class FleetUnavailable(Exception):
    """Redis could not be used just now; the caller goes on alone."""


class _HolderSilent(Exception):
    """The replica holding the lock has not published a token in time (it may be stuck)."""


@dataclass(frozen=True, slots=True)
class SharedFailure:
    message: str
    code: str
    permanent: bool
    login_required: bool
    retry_in: float
    streak: int

    def error(self) -> IdentityProviderError:
        kind = SignInRequired if self.login_required else IdentityProviderError
        return kind(
            self.message,
            code=self.code,
            retry_after=self.retry_in,
            permanent=self.permanent,
            shared=True,
            streak=self.streak,
        )


class Fleet:
    """The Redis connection a daemon's providers share: health, key check and primitives."""

    def __init__(
        self,
        settings: CacheSettings,
        key: SecretStr,
        password: SecretStr | None,
        source_file: str,
        on_connected: Callable[[bool], None] | None = None,
    ) -> None:
        assert settings.url is not None  # noqa: S101 - the settings model requires it for redis
        self.settings = settings
        self.prefix = settings.key_prefix
        self._source_file = source_file
        self.sealer = Sealer(base64.b64decode(key.get_secret_value()))
        options: dict[str, Any] = {
            "socket_connect_timeout": settings.connect_timeout_s,
            "socket_timeout": settings.timeout_s,
            "retry": Retry(NoBackoff(), 0),  # a failure switches us to local at once; the monitor retries
            "username": settings.username,
            "password": password.get_secret_value() if password is not None else None,
        }
        if settings.url.startswith("rediss://"):
            options["ssl_check_hostname"] = True  # older redis-py defaulted to False
            if settings.ca_file is not None:
                options["ssl_ca_certs"] = str(settings.ca_file)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(settings.url, **options)
        self._on_connected = on_connected
        self.connected: bool | None = None  # None until the first answer (or failure)
        self._monitor: asyncio.Task[None] | None = None
        self.rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self.where = _redacted(settings.url)

    @classmethod
    def for_config(cls, config: Config, on_connected: Callable[[bool], None] | None = None) -> Fleet:
        secrets = config.secrets
        assert secrets.fleet_key is not None  # noqa: S101 - resolved at load time for backend = "redis"
        return cls(config.settings.cache, secrets.fleet_key, secrets.redis_password, config.source_file, on_connected)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the key against the fleet's records; Redis being down is not fatal, a wrong key is."""
        try:
            await self._check_key()
        except FleetUnavailable as exc:
            self.set_connected(False, str(exc))
        else:
            self.set_connected(True)
        self._monitor = asyncio.get_running_loop().create_task(self._watch(), name="fleet-monitor")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        await self.redis.aclose()

    def source(self, local: LocalSource) -> FleetSource:
        return FleetSource(self, local)

    async def _check_key(self) -> None:
        name = f"{self.prefix}keycheck"
        blob = await self.call(self.redis.get(name))
        if blob is None:
            await self.call(self.redis.set(name, self.sealer.seal(name, KEY_CHECK_PLAINTEXT), nx=True))
            blob = await self.call(self.redis.get(name))
        try:
            self.sealer.open(name, blob)
        except SealBroken:
            raise ConfigError(
                self._source_file,
                [
                    f"[cache] encryption_key_file: the key does not decrypt what this fleet stored in {self.where} "
                    f"(under {self.prefix!r}) — give every replica the same key file, or use another key_prefix "
                    "for a new key"
                ],
            ) from None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_UP_S if self.connected else MONITOR_DOWN_S)
            try:
                if self.connected:
                    await self.call(self.redis.ping())
                else:
                    await self._check_key()
                    self.set_connected(True)
            except FleetUnavailable as exc:
                self.set_connected(False, str(exc))
            except ConfigError as exc:
                # Someone re-keyed the fleet while we ran: stay alone rather than trust its records.
                log.error("fleet.key_mismatch", error=str(exc))
                self.set_connected(False, "key mismatch")

    def set_connected(self, connected: bool, reason: str = "") -> None:
        if connected == self.connected:
            return
        first = self.connected is None
        self.connected = connected
        if self._on_connected is not None:
            self._on_connected(connected)
        if connected:
            log.info("fleet.connected" if first else "fleet.rejoined", redis=self.where, prefix=self.prefix)
        else:
            log.warning("fleet.unavailable", redis=self.where, error=reason, fallback="local acquisition")

    async def call(self, pending: Awaitable[Any]) -> Any:
        """Await a Redis command; any Redis or socket failure becomes ``FleetUnavailable``."""
        try:
            return await pending
        except (RedisError, OSError) as exc:
            raise FleetUnavailable(f"{type(exc).__name__}: {first_line(exc, 200)}") from None


class FleetSource:
    """One provider's place in the fleet: its record, lock and failure keys, and the protocol."""

    def __init__(self, fleet: Fleet, local: LocalSource) -> None:
        self.fleet = fleet
        self.local = local
        client = local.client
        # The key names the identity, not just the credential's name: a replica whose
        # [credentials.NAME] points at another app, tenant or user (a config change rolling out)
        # must never adopt the other identity's token. The name is also the AEAD's associated data.
        digest = hashlib.sha256("\n".join(local.scopes).encode()).hexdigest()[:16]
        base = f"{fleet.prefix}{client.name}:{identity_fingerprint(client)}:{digest}"
        self.record_key = f"{base}:token"
        self.lock_key = f"{base}:lock"
        self.failure_key = f"{base}:failure"
        self.streak_key = f"{base}:streak"
        self.sign_in = SharedSignIn(fleet, client) if client.persistent_cache is not None else None
        # A holder may take a few identity-provider round trips (discovery, then the token), each
        # up to timeout_s; it renews its lock that long at most, and waiters wait that long.
        self.max_hold_s = 3 * client.credential.timeout_s + fleet.settings.lock_ttl_s
        self.wait_s = self.max_hold_s + fleet.settings.lock_ttl_s

    def stamp(self) -> object:
        return self.local.stamp()

    async def forget_failures(self) -> None:
        """Something changed here (a reload, a credential file): lift the fleet's shared wait so this
        replica asks now, instead of adopting a refusal that may no longer hold."""
        if not self.fleet.connected:
            return
        try:
            await self.fleet.call(self.fleet.redis.delete(self.failure_key, self.streak_key))
        except FleetUnavailable as exc:
            self.fleet.set_connected(False, str(exc))

    async def failure_lifted(self) -> bool:
        """Whether the fleet's shared failure is gone before its time (a login or a reload on another
        replica deleted it); False when Redis can't say."""
        if not self.fleet.connected:
            return False
        try:
            return not await self.fleet.call(self.fleet.redis.exists(self.failure_key))
        except FleetUnavailable as exc:
            self.fleet.set_connected(False, str(exc))
            return False

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        """Another replica's token (``shared``), one we acquired for everyone (``fleet``), or — when
        Redis can't help, or for a claims challenge, which is this request's own — ``local``."""
        fleet = self.fleet
        if claims is not None or not fleet.connected:
            return await self.local.acquire(claims, avoid)
        try:
            return await self._coordinated(avoid)
        except FleetUnavailable as exc:
            fleet.set_connected(False, str(exc))
        except _HolderSilent as exc:
            log.warning("fleet.holder_silent", key=self.lock_key, error=str(exc), fallback="local acquisition")
        return await self.local.acquire(None, avoid)

    async def _coordinated(self, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        fleet, redis = self.fleet, self.fleet.redis
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.wait_s
        while True:
            record_blob, failure_blob = await fleet.call(redis.mget(self.record_key, self.failure_key))
            shared = self._usable(record_blob, avoid)
            if shared is not None:
                return shared, "shared"
            if failure_blob is not None:
                raise _failure(failure_blob, await fleet.call(redis.pttl(self.failure_key))).error()
            holder = secrets.token_hex(16)
            ttl_ms = int(fleet.settings.lock_ttl_s * 1000)
            if await fleet.call(redis.set(self.lock_key, holder, nx=True, px=ttl_ms)):
                return await self._as_holder(holder, avoid)
            if loop.time() >= give_up_at:
                raise _HolderSilent(f"no token from the replica holding the lock within {self.wait_s:.0f} s")
            await asyncio.sleep(fleet.rng.uniform(POLL_MIN_S, POLL_MAX_S))

    async def _as_holder(self, holder: str, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        fleet = self.fleet
        renewing = asyncio.get_running_loop().create_task(self._renew(holder))
        try:
            # Someone may have finished between our look and our lock.
            shared = self._usable(await fleet.call(fleet.redis.get(self.record_key)), avoid)
            if shared is not None:
                return shared, "shared"
            if self.sign_in is not None:
                await self.sign_in.pull()
            try:
                acquired, _ = await self.local.acquire(None, avoid)
            except IdentityProviderError as exc:
                as_shared = await self._share_failure(exc)
                if as_shared is not None:
                    raise as_shared from exc  # we wait what the fleet waits
                raise
            try:
                await self._publish(acquired)
            except FleetUnavailable as exc:
                fleet.set_connected(False, str(exc))
                return acquired, "local"
            return acquired, "fleet"
        finally:
            renewing.cancel()
            with contextlib.suppress(FleetUnavailable):  # if Redis is gone, the lock expires by itself
                await fleet.call(fleet.redis.eval(_RELEASE, 1, self.lock_key, holder))

    async def _renew(self, holder: str) -> None:
        """Keep our lock while we work, but not forever: a holder stuck past ``max_hold_s`` lets go."""
        fleet = self.fleet
        ttl_s = fleet.settings.lock_ttl_s
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.max_hold_s - ttl_s
        while loop.time() < give_up_at:
            await asyncio.sleep(ttl_s / 3)
            try:
                await fleet.call(fleet.redis.eval(_RENEW, 1, self.lock_key, holder, int(ttl_s * 1000)))
            except FleetUnavailable:
                return

    def _usable(self, blob: bytes | None, avoid: str | None) -> AcquiredToken | None:
        """The shared token when it is there, ours to read, not the refused one and not yet due."""
        if blob is None:
            return None
        try:
            record = json.loads(self.fleet.sealer.open(self.record_key, blob))
        except SealBroken:
            log.error("fleet.record_undecryptable", key=self.record_key)
            return None
        now = time.time()
        value = str(record["token"])
        if value == avoid or now >= float(record["refresh_at"]):
            return None
        return AcquiredToken(
            value=value, expires_in=float(record["expires_at"]) - now, refresh_in=float(record["refresh_at"]) - now
        )

    async def _publish(self, acquired: AcquiredToken) -> None:
        now = time.time()
        lifetime = max(1.0, acquired.expires_in)
        refresh_in = acquired.refresh_in if acquired.refresh_in is not None else lifetime / 2
        record = {"token": acquired.value, "expires_at": now + lifetime, "refresh_at": now + min(refresh_in, lifetime)}
        sealed = self.fleet.sealer.seal(self.record_key, json.dumps(record).encode())
        pipe = self.fleet.redis.pipeline(transaction=True)
        pipe.set(self.record_key, sealed, px=int(lifetime * 1000))
        pipe.delete(self.failure_key, self.streak_key)
        if self.sign_in is not None:
            stamped = await self.sign_in.stamped()
            if stamped is not None:
                pipe.set(self.sign_in.key, stamped)
        await self.fleet.call(pipe.execute())

    async def _share_failure(self, error: IdentityProviderError) -> IdentityProviderError | None:
        """Share the identity provider's own answer (throttling, refusal, outage) — not this
        replica's local trouble (its network, its assertion file), which others may not have.

        The wait is the backoff for the fleet's count of consecutive failures, so it grows as one
        daemon's would however many replicas take turns. Returns the failure as the fleet shares
        it (this replica waits the same), or None when it was not shared.
        """
        if error.code in LOCAL_FAILURES:
            return None
        fleet, redis = self.fleet, self.fleet.redis
        try:
            streak = int(await fleet.call(redis.incr(self.streak_key)))
            if isinstance(error, SignInRequired) and not error.permanent:
                wait = error.retry_after or FAILURE_SHARE_MIN_S  # no account: a local look, soon again
            else:
                wait = backoff.delay_s(streak, error.permanent, error.retry_after, fleet.rng)
            wait = min(FAILURE_SHARE_MAX_S, max(FAILURE_SHARE_MIN_S, wait))
            body = {
                "message": str(error),
                "code": error.code,
                "permanent": error.permanent,
                "login_required": isinstance(error, SignInRequired),
                "streak": streak,
            }
            pipe = redis.pipeline(transaction=True)
            pipe.set(self.failure_key, json.dumps(body), px=int(wait * 1000))
            pipe.pexpire(self.streak_key, int((wait + STREAK_KEEP_S) * 1000))
            await fleet.call(pipe.execute())
        except FleetUnavailable as exc:
            fleet.set_connected(False, str(exc))
            return None
        return error.as_shared(wait, streak)


def _failure(blob: bytes, pttl_ms: int) -> SharedFailure:
    body = json.loads(blob)
    return SharedFailure(
        message=str(body["message"]),
        code=str(body["code"]),
        permanent=bool(body["permanent"]),
        login_required=bool(body["login_required"]),
        retry_in=max(0.1, pttl_ms / 1000),
        streak=int(body.get("streak", 0)),
    )


def _redacted(url: str) -> str:
    """The Redis URL for logs: scheme, host, port and database, never credentials."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2].partition('?')[0]}"
