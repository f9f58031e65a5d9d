"""`kind = "default"` and the CLI kinds as a user runs them: `bearerd run` and `bearerd check --acquire`
as processes, with the stand-in `az` on a PATH the test gives the daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from bearerd.emulator import EmulatorStack
from bearerd.emulator.stack import AZURE_CLI_CLIENT_ID
from support import cli_standins
from support.configs import Tables, stack_tables, write_tables
from support.processes import bearerd_cli, daemon_process

# Set empty, so nothing inherited from the machine running the tests makes `default` choose otherwise.
_UNSET = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)


def default_tables(stack: EmulatorStack) -> Tables:
    tables = stack_tables(stack, credential="auto")
    tables["credentials.auto"] = {"kind": "default", "ca_file": str(stack.ca_file)}
    return tables


def cli_environment(path: str) -> dict[str, str]:
    return {**dict.fromkeys(_UNSET, ""), "PATH": path}


async def test_default_on_a_developer_machine_chooses_az_and_the_started_line_says_why(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    standins = cli_standins.install(stack, tmp_path)
    env = cli_environment(standins.path)
    async with daemon_process(tmp_path / "run.toml", default_tables(stack), env=env) as proc:
        async with aiohttp.ClientSession() as session, session.get(proc.base + "/secretapi/api/status") as resp:
            assert resp.status == 200
        started = next(
            json.loads(line) for line in proc.output.splitlines() if line.startswith(b"{") and b'"started"' in line
        )
    identity = started["identities"]["auto"]
    assert identity["chosen"] == f"default → azure_cli ({standins.bin / 'az'})"
    assert list(identity["passed_over"]) == ["environment", "workload_identity", "managed_identity"]
    assert "IDENTITY_ENDPOINT" in identity["passed_over"]["managed_identity"]
    assert stack.apps["secretapi"].requests_seen[-1].claims["appid"] == AZURE_CLI_CLIENT_ID


async def test_check_acquire_names_the_chosen_identity_and_the_reasons(stack: EmulatorStack, tmp_path: Path) -> None:
    standins = cli_standins.install(stack, tmp_path)
    path = write_tables(tmp_path / "check.toml", default_tables(stack))
    proc = await bearerd_cli("check", "--acquire", "-c", str(path), env=cli_environment(standins.path))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert f"[credentials.auto] default → azure_cli ({standins.bin / 'az'})" in text
    assert "  not workload_identity: AZURE_FEDERATED_TOKEN_FILE is not set" in text
    assert "secretapi  default → azure_cli" in text and "OK" in text
    for token in stack.entra.issued_tokens:
        assert token not in text and token not in err.decode()
