"""The upstream connection pools: one per (origin, TLS trust, egress proxy, pool settings).

Routes that reach the same upstream the same way share a pool. A reload keeps the pools the new
routes still use (warm connections survive it) and retires the others: they take no new
requests, close their idle connections at once and the busy ones as their answers complete, so a
request in flight on the old configuration finishes undisturbed.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from bearerd.h1 import PoolOptions, UpstreamPool

PoolKey = tuple[str, int, str | None, PoolOptions]


class Pools:
    def __init__(self) -> None:
        self._pools: dict[PoolKey, UpstreamPool] = {}

    def get(self, origin: str, tls: ssl.SSLContext | None, proxy: str | None, options: PoolOptions) -> UpstreamPool:
        # The TLS context is the credential client's, which a reload keeps while the credential is unchanged.
        key = (origin, id(tls), proxy, options)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = UpstreamPool(origin, ssl_context=tls, proxy=proxy, options=options)
        return pool

    def retire_unused(self, in_use: Iterable[UpstreamPool]) -> None:
        keep = {id(p) for p in in_use}
        for key, pool in list(self._pools.items()):
            if id(pool) not in keep:
                del self._pools[key]
                pool.retire()

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()
