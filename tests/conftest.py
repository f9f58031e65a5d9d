"""Fixtures every level shares: log scanning, and a real emulator stack and daemon on 127.0.0.1.

Unit tests use none of the network fixtures; integration tests get an in-process daemon
(``running``); system tests start processes through ``support.processes``.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack
from bearerd.logs import configure_logging
from support.configs import TEST_APPS, ConfigWriter, Tables, stack_tables, write_tables
from support.inprocess import Running, start


@pytest.fixture(autouse=True)
def _every_log_line(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every test's log lines (JSON, through the production pipeline with its redaction) are
    scanned afterwards: no token the test's emulator issued and no client secret may appear."""
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    yield stream
    stack = request.node.funcargs.get("stack")
    if isinstance(stack, EmulatorStack):
        text = stream.getvalue()
        for token in stack.entra.issued_tokens:
            assert token not in text, "an access token reached the log"
        if stack.client_secret_file.exists():
            assert stack.client_secret_file.read_text() not in text, "the client secret reached the log"


@pytest.fixture
def log_stream(_every_log_line: io.StringIO) -> io.StringIO:
    """The test's log lines so far, as JSON."""
    return _every_log_line


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[EmulatorStack]:
    async with EmulatorStack(tmp_path / "emulator", apps=TEST_APPS) as s:
        yield s


@pytest.fixture
def write_config(tmp_path: Path, stack: EmulatorStack) -> ConfigWriter:
    """Write the standard config for ``stack`` (``**route_overrides`` change the secretapi route),
    or the given tables, to the test's config file."""

    def write(tables: Tables | None = None, **route_overrides: Any) -> Path:
        chosen = tables if tables is not None else stack_tables(stack, **route_overrides)
        return write_tables(tmp_path / "bearerd.toml", chosen)

    return write


@pytest.fixture
def config(write_config: ConfigWriter) -> Config:
    return load_config(write_config())


@pytest.fixture
async def running(config: Config) -> AsyncIterator[Running]:
    async with start(config) as r:
        yield r
