"""Which event loop bearerd runs on, and whether aiohttp's C speedups are in use.

uvloop (``pip install 'bearerd[speed]'``) makes the proxy's socket work cheaper; it is used
automatically when installed, and the plain asyncio loop otherwise — behaviour is the same.
The ``started`` log line says which, so an operator can tell a slow install from a slow daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop  # optional: bearerd[speed]
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def describe() -> dict[str, object]:
    """For the ``started`` log line: the running loop and aiohttp's compiled parsers."""
    from aiohttp import http_parser

    return {
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "aiohttp_speedups": http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser",
    }
