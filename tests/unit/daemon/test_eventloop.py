"""``eventloop.run``: the loop never runs "during handling of" the ImportError of a missing uvloop."""

from __future__ import annotations

import sys

import pytest

from bearerd.daemon import eventloop


def test_without_uvloop_nothing_runs_inside_the_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError

    async def main() -> tuple[object, object]:
        handled = sys.exc_info()[1]
        try:
            raise ValueError("a parse error")
        except ValueError as exc:
            return handled, exc.__context__

    handled, context = eventloop.run(main())
    # Before: the ImportError was being handled around asyncio.run, so every exception in the
    # daemon carried it as __context__ and every traceback showed "No module named 'uvloop'".
    assert handled is None and context is None
