"""Shared fixtures: a real emulator stack and a real daemon, on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bearerd.config.schema import Settings, load_settings
from bearerd.emulator import EmulatorStack
from bearerd.logs import configure_logging
from helpers import TEST_APPS, ConfigWriter, Running, render_toml, stack_tables, start


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
    def write(tables: dict[str, dict[str, Any]] | None = None, **route_overrides: Any) -> Path:
        path = tmp_path / "bearerd.toml"
        path.write_text(render_toml(tables if tables is not None else stack_tables(stack, **route_overrides)))
        return path

    return write


@pytest.fixture
def settings(write_config: ConfigWriter) -> Settings:
    return load_settings(write_config())[0]


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    async with start(settings) as r:
        yield r
