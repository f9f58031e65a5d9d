"""The command line, run as a user runs it: real subprocesses against the in-test emulator."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import jwt

from bearerd.emulator import EmulatorStack
from support import REPO_ROOT
from support.configs import ConfigWriter, stack_tables, write_tables
from support.processes import bearerd_cli, daemon_process, run_cli

ROOT = REPO_ROOT


async def test_token_prints_a_verified_token_only(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    code, out, err = await run_cli("token", "secretapi", "-c", str(write_config()))
    assert code == 0, err
    token = out.strip()
    app = stack.apps["secretapi"]
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(
        token, stack.entra.public_keys()[kid], algorithms=["RS256"], audience=app.app_id_uri, issuer=stack.entra.issuer
    )
    assert claims["appid"] == stack.secret_client_id
    assert token not in err


async def test_token_unknown_route(write_config: ConfigWriter) -> None:
    code, _, err = await run_cli("token", "nope", "-c", str(write_config()))
    assert code == 2 and "secretapi" in err


async def test_check_acquire_prints_table_without_tokens(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    code, out, err = await run_cli("check", "--acquire", "-c", str(write_config()))
    assert code == 0, err
    assert re.search(r"secretapi\s+client_secret\s+https://127\.0\.0\.1:\d+/\s+\S+ \S+\s+OK", out), out
    assert re.search(r"otherapi\s+certificate\s+https://127\.0\.0\.1:\d+/\s+\S+ \S+\s+OK", out), out
    for token in stack.entra.issued_tokens:
        assert token not in out and token not in err


async def test_check_acquire_reports_failure(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    path = write_config(scopes=["https://nowhere.example//.default"])
    code, out, _ = await run_cli("check", "--acquire", "-c", str(path))
    assert code == 1
    assert re.search(r"secretapi\s+client_secret.*FAILED: .*invalid_scope", out), out
    # The AADSTS code explained: what it means and what to change.
    assert "AADSTS500011: Entra found no application for this scope's resource" in out
    assert 'fix: set app_id = "<the App Proxy app\'s application (client) ID>"' in out
    # What failed and the fix — not the daemon's "retrying in N s": this command retries nothing.
    assert "retrying" not in out
    assert out.count("fix:") == 1  # one fix, the AADSTS table's, not a second one


async def test_token_says_what_failed_and_the_fix(stack: EmulatorStack, tmp_path: Path) -> None:
    secret = tmp_path / "wrong-secret"
    secret.write_text("not-the-registered-secret")
    secret.chmod(0o600)
    tables = stack_tables(stack)
    tables["credentials.emu-secret"]["client_secret_file"] = str(secret)
    code, out, err = await run_cli("token", "secretapi", "-c", str(write_tables(tmp_path / "c.toml", tables)))
    assert code == 1 and out == ""
    assert "retrying" not in err
    assert "identity provider refused (invalid_client): AADSTS7000215: the client secret is wrong" in err
    assert err.count("— fix:") == 1 and "client_secret" in err.split("— fix:")[1]


async def test_run_serves_and_stops_on_sigterm(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    async with daemon_process(write_config(), stack_tables(stack)) as d, aiohttp.ClientSession() as session:
        async with session.get(d.base + "/secretapi/api/status") as resp:
            assert resp.status == 200
        d.proc.send_signal(signal.SIGTERM)
        assert await d.wait(15) == 0
    events = [line for line in d.output.decode().splitlines() if line.startswith("{")]
    assert any('"event": "request"' in e and '"status": 200' in e for e in events)
    assert any('"event": "stopped"' in e for e in events)


async def test_run_refuses_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[routes.x]\nmatch = { path_prefix = "/x/" }\nupstream = "https://x/"\ncredential = "c"\n')
    code, _, err = await run_cli("run", "-c", str(path))
    assert code == 2
    assert str(path) in err and "[routes.x]" in err and "refusing to start" in err


async def test_demo_prints_curl_lines_that_work_and_exits_on_sigterm(tmp_path: Path) -> None:
    proc = await bearerd_cli("demo", "--port", "0", "--workdir", str(tmp_path / "demo"), env={"PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not any(line.startswith("curl http") for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "demo exited early"
            lines.append(line.decode().rstrip("\n"))
        text = "\n".join(lines)
        assert str(tmp_path / "demo" / "bearerd.toml") in text
        url = next(line for line in lines if line.startswith("curl http")).split()[1]
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    # The demo's terminal shows what happened, in the console renderer (not JSON): the token
    # event and the access line of the request just made.
    log = err.decode()
    assert re.search(r"token\.acquired .*credential=demo-app", log), log
    assert re.search(r"\brequest .*method=GET .*route=secretapi .*status=200", log), log
    assert '{"event"' not in log


async def test_emulator_command_runs_until_sigterm(tmp_path: Path) -> None:
    proc = await bearerd_cli("emulator", "--workdir", str(tmp_path / "emu"))
    assert proc.stdout is not None
    try:
        seen = ""
        while "backend" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "emulator exited early"
            seen += line.decode()
        authority = re.search(r"authority:\s+(\S+)", seen)
        assert authority is not None
        assert (tmp_path / "emu" / "ca.pem").exists()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


async def test_version_and_routes_table(write_config: ConfigWriter) -> None:
    from bearerd import __version__

    code, out, _ = await run_cli("--version")
    assert code == 0 and out.strip() == f"bearerd {__version__}"
    code, out, _ = await run_cli("routes", "-c", str(write_config()))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ROUTE", "LOCAL", "ENTRY", "UPSTREAM", "CREDENTIAL"]
    assert any(r.startswith("secretapi") and "/secretapi/" in r and "emu-secret" in r for r in rows)
    assert any(r.startswith("otherapi") and "emu-cert" in r for r in rows)


async def test_example_config_passes_check_without_a_warning(tmp_path: Path) -> None:
    # As systemd runs it (systemd/bearerd.service): the secret in $CREDENTIALS_DIRECTORY, mode 0600.
    secret = tmp_path / "contoso-app"
    secret.write_text("the-app-registrations-secret")
    secret.chmod(0o600)
    example = str(ROOT / "config" / "bearerd.example.toml")
    code, out, err = await run_cli("check", "-c", example, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert code == 0, err
    assert "OK" in out and "secretapi" in out
    assert "warning" not in err.lower()  # the recommended secret source: nothing to warn about
    # Without the secret where the example says, `check` names the variable, the table and the field.
    code, _, err = await run_cli("check", "-c", example, env={"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert code == 2 and "[credentials.contoso-app]" in err and "contoso-app" in err


async def test_check_refuses_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bearerd.toml"
    path.write_text("x = [")
    code, _, err = await run_cli("check", "-c", str(path))
    assert code == 2
    assert str(path) in err and "refusing to start" in err
