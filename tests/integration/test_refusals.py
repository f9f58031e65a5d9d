"""Refusals the identity provider will repeat, against the emulator: they back off (one call,
not one per request or per few seconds), and what can change the answer ends the wait at once —
a replaced secret file, a reload."""

from __future__ import annotations

import os
from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from bearerd.tokens.backoff import REFUSAL_BASE_S
from support.configs import stack_tables, write_tables
from support.inprocess import Running, start


def write_secret(path: Path, value: str) -> None:
    """Replace the file as an operator (or a secret manager) would: a new file moved into place."""
    new = path.with_suffix(".new")
    new.write_text(value)
    new.chmod(0o600)
    os.replace(new, path)


async def status_of(running: Running) -> tuple[int, dict[str, object]]:
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        body = await resp.json(content_type=None)
        if resp.status == 503:
            assert int(resp.headers["Retry-After"]) >= REFUSAL_BASE_S / 2  # the refusal's backoff
        return resp.status, body


async def test_a_replaced_secret_file_is_used_at_once(stack: EmulatorStack, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    write_secret(secret, "a-secret-entra-does-not-know")
    tables = stack_tables(stack)
    tables["credentials.emu-secret"]["client_secret_file"] = str(secret)
    async with start(load_config(write_tables(tmp_path / "c.toml", tables))) as running:
        for _ in range(20):
            status, body = await status_of(running)
            assert status == 503 and "invalid_client" in str(body["detail"])
        assert stack.entra.token_calls(stack.secret_client_id) == 1  # refused once, not asked again
        write_secret(secret, stack.client_secret_file.read_text())  # the operator fixes the file
        status, _ = await status_of(running)
        assert status == 200
        assert stack.entra.token_calls(stack.secret_client_id) == 2


async def test_a_reload_ends_a_refusals_wait(stack: EmulatorStack, tmp_path: Path) -> None:
    registered = stack.entra.clients[stack.secret_client_id]
    right, registered.secret = registered.secret, "rotated-in-entra"
    path = write_tables(tmp_path / "c.toml", stack_tables(stack))
    async with start(load_config(path)) as running:
        for _ in range(20):
            assert (await status_of(running))[0] == 503
        assert stack.entra.token_calls(stack.secret_client_id) == 1
        registered.secret = right  # fixed in Entra (the secret re-added), then `bearerd reload`
        await running.daemon.reload(load_config(path))
        assert (await status_of(running))[0] == 200
        assert stack.entra.token_calls(stack.secret_client_id) == 2
