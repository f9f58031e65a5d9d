"""Time ``TokenProvider.current()`` — the per-request token lookup — with a fresh token in hand.

Runs as a subprocess of the harness so timeit measures a quiet interpreter (not one whose loop
also hosts the emulator and clients) and MSAL's/structlog's output stays out of the report.
The provider is built exactly as the daemon builds it (``Providers`` from a real config) and gets
its token from the harness's Entra emulator once; everything after that is the cache-hit path.

    python bench/tokenhit.py CONFIG ROUTE   → one JSON line: {"us_per_call": …, …}
"""

from __future__ import annotations

import asyncio
import json
import sys
import timeit
from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.logs import configure_logging
from bearerd.tokens.registry import Providers

NUMBER = 200_000
REPEAT = 7


async def measure(config: Path, route: str) -> dict[str, float | int]:
    configure_logging("json", "warning", stream=sys.stderr)  # only trouble; token.acquired is not the result
    providers = Providers(load_config(config))
    try:
        provider = providers.for_route(route)
        await provider.fetch()
        if provider.current() is None:
            raise RuntimeError("the fetched token is not served by current()")
        runs = timeit.Timer(provider.current).repeat(repeat=REPEAT, number=NUMBER)
        return {
            "us_per_call": min(runs) / NUMBER * 1e6,  # the least-disturbed run, as timeit advises
            "us_per_call_median": sorted(runs)[len(runs) // 2] / NUMBER * 1e6,
            "calls_per_run": NUMBER,
            "runs": REPEAT,
            "acquisitions": provider.acquisitions,
        }
    finally:
        await providers.aclose()


def main() -> None:
    config, route = Path(sys.argv[1]), sys.argv[2]
    print(json.dumps(asyncio.run(measure(config, route))), flush=True)


if __name__ == "__main__":
    main()
