"""Rotated secret and certificate files under a running daemon: the next acquisition uses them; a
half-written file is refused (logged once) and the good secret goes on working."""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import pytest

from bearerd.config.loader import Config
from bearerd.emulator import EmulatorStack
from bearerd.emulator.pki import make_client_certificate, write_private
from support.inprocess import Running, start


def replace_file(path: Path, data: bytes) -> None:
    """As Kubernetes and editors do it: a new file renamed over the old one (new inode)."""
    tmp = path.with_name(path.name + ".new")
    write_private(tmp, data)
    os.replace(tmp, path)


async def new_token(running: Running, route: str = "secretapi") -> int:
    """Make the daemon acquire again (as a refused token does), then send a request with what it got."""
    provider = running.daemon.providers.for_route(route)
    current = provider.current()
    assert current is not None
    await provider.refresh_rejected(current)
    async with running.session.get(running.url(f"/{route}/api/status")) as resp:
        return resp.status


def events(log_stream: io.StringIO, name: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == name]


async def test_a_rotated_secret_file_is_used_by_the_next_acquisition(
    stack: EmulatorStack, config: Config, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    monkeypatch.setattr("bearerd.tokens.provider.FORCED_REFRESH_MIN_INTERVAL_S", 0.0)
    async with start(config) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 200
        # The writer has truncated the file and not written the new secret yet: keep the one that works.
        stack.client_secret_file.write_text("")
        assert await new_token(running) == 200
        assert await new_token(running) == 200
        assert len(events(log_stream, "credential.rotation_refused")) == 1
        # Rotation: Entra has a new secret (the old one stops working), the file holds it.
        new = secrets.token_urlsafe(32)
        stack.entra.clients[stack.secret_client_id].secret = new
        replace_file(stack.client_secret_file, new.encode())
        assert await new_token(running) == 200
    assert [c.status for c in stack.entra.calls if c.client_id == stack.secret_client_id] == [200, 200, 200, 200]
    assert [e["credential"] for e in events(log_stream, "credential.rotated")] == ["emu-secret"]


async def test_a_rotated_certificate_and_key_are_used_by_the_next_acquisition(
    stack: EmulatorStack, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bearerd.tokens.provider.FORCED_REFRESH_MIN_INTERVAL_S", 0.0)
    async with start(config) as running:
        async with running.session.get(running.url("/otherapi/api/status")) as resp:
            assert resp.status == 200
        cert, key = tmp_path / "new-cert.pem", tmp_path / "new-key.pem"
        new_pem = make_client_certificate(cert, key, "rotated")
        # The key arrives first: it doesn't match the old certificate yet — refused, the old pair keeps working.
        replace_file(stack.key_file, key.read_bytes())
        assert await new_token(running, "otherapi") == 200
        stack.entra.clients[stack.cert_client_id].certificate_pem = new_pem
        replace_file(stack.cert_file, new_pem)
        assert await new_token(running, "otherapi") == 200
    statuses = [c.status for c in stack.entra.calls if c.client_id == stack.cert_client_id]
    assert statuses == [200, 200, 200]
