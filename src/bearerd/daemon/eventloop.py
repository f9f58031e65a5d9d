"""Which event loop bearerd runs on, and whether aiohttp's C speedups are in use.

uvloop (``pip install 'bearerd[speed]'``) makes the proxy's socket work cheaper; it is used
automatically when installed, and the plain asyncio loop otherwise — behaviour is the same.
The ``started`` log line says which, so an operator can tell a slow install from a slow daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on asyncio's loop.

    The loop must not be started inside the ``except ImportError:`` block: everything the loop
    runs would then execute "during handling of" that ImportError, so every exception raised in
    the daemon got it as ``__context__`` and every logged traceback showed a stale
    ``ModuleNotFoundError: No module named 'uvloop'`` (issue 16, item 8).
    """
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # optional: bearerd[speed]
    except ImportError:
        pass
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def describe() -> dict[str, object]:
    """For the ``started`` log line: the running loop and aiohttp's compiled parsers."""
    from aiohttp import http_parser

    return {
        "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "aiohttp_speedups": http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser",
    }
