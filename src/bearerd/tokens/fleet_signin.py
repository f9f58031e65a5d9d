"""A user's sign-in travels through the fleet: the MSAL cache of a device-code credential, in Redis.

One ``bearerd login`` then serves every replica, and the refresh token's rotations stay in one
chain (a replica that refreshes publishes the rotated cache with its new token). The copy is
sealed like every fleet record and stamped with when it was written, so a newer local sign-in
(say, after a revocation) wins over the fleet's older copy (``usercache.merge_shared``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from bearerd.errors import first_line
from bearerd.tokens.aead import SealBroken, Sealer
from bearerd.tokens.identity import CredentialClient
from bearerd.tokens.usercache import PersistentTokenCache

log = structlog.get_logger("bearerd.fleet")


def identity_fingerprint(client: CredentialClient) -> str:
    """Who the tokens are for: kind, authority, app and user or managed identity (no secret)."""
    cred = client.credential
    fields = {
        "kind": cred.kind,
        "authority": getattr(cred, "authority_url", ""),
        "client_id": getattr(cred, "client_id", None),
        "username": getattr(cred, "username", None),
        "object_id": getattr(cred, "object_id", None),
        "resource_id": getattr(cred, "resource_id", None),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


class FleetStore(Protocol):
    """What a shared sign-in needs of the fleet's connection (``fleet.Fleet``)."""

    prefix: str
    where: str
    sealer: Sealer
    redis: aioredis.Redis

    async def call(self, pending: Awaitable[Any]) -> Any: ...


class SharedSignIn:
    """The fleet's copy of one user credential's MSAL cache: per identity, shared by all its scopes."""

    def __init__(self, fleet: FleetStore, client: CredentialClient) -> None:
        cache = client.persistent_cache
        assert cache is not None  # noqa: S101 - only user credentials have one
        self.fleet = fleet
        self.client = client
        self.cache: PersistentTokenCache = cache
        self.identity = identity_fingerprint(client)
        self.key = f"{fleet.prefix}{client.name}:{self.identity}:msal"

    async def pull(self) -> None:
        """Take the fleet's copy into the local cache before acquiring (it holds the newest refresh token)."""
        blob = await self.fleet.call(self.fleet.redis.get(self.key))
        if blob is None:
            return
        try:
            shared = json.loads(self.fleet.sealer.open(self.key, blob))
        except SealBroken:
            log.error("fleet.record_undecryptable", key=self.key)
            return
        try:
            await asyncio.to_thread(self.cache.merge_shared, str(shared["cache"]), float(shared["written_at"]))
        except Exception as exc:  # the local copy stays as it was; the acquisition goes on with it
            log.error("fleet.cache_import_failed", error_type=type(exc).__name__)

    async def stamped(self) -> bytes | None:
        """The local cache, sealed and stamped for publishing; None when it can't be read here."""
        try:
            text = await asyncio.to_thread(self.cache.export_text)
        except Exception as exc:  # a local disk or keyring problem must not cost the new token
            log.error("fleet.cache_export_failed", error_type=type(exc).__name__)
            return None
        return self.fleet.sealer.seal(self.key, json.dumps({"written_at": time.time(), "cache": text}).encode())

    async def publish(self) -> bool:
        """After `bearerd login`: put the new sign-in where every replica finds it, and lift the
        fleet's shared "login required" records (and their count) so the next attempt uses it at once."""
        blob = await self.stamped()
        if blob is None:
            return False
        redis = self.fleet.redis
        try:
            await redis.set(self.key, blob)
            base = f"{self.fleet.prefix}{self.client.name}:{self.identity}:*:"
            stale = [k for suffix in ("failure", "streak") async for k in redis.scan_iter(base + suffix)]
            if stale:
                await redis.delete(*stale)
        except (RedisError, OSError) as exc:
            log.warning(
                "fleet.sign_in_not_shared",
                redis=self.fleet.where,
                error=f"{type(exc).__name__}: {first_line(exc, 200)}",
            )
            return False
        return True
