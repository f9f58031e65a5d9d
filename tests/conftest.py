"""Shared fixtures: a real emulator stack and a real daemon, on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bearerd.config import Settings, load_settings
from bearerd.emulator import EmulatorStack
from bearerd.logs import configure_logging
from helpers import TEST_APPS, ConfigWriter, Running, render_toml, stack_tables, start


@pytest.fixture
def log_stream() -> io.StringIO:
    """Every log line of the test, as JSON, through the production pipeline (redaction included)."""
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    return stream


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
