"""``bearerd doctor`` as a user runs it, against the emulator: text and JSON, exit status, each
step's reason and fix, the token's claims — never the token."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter, stack_tables
from support.processes import run_cli


def assert_no_token(stack: EmulatorStack, *outputs: str) -> None:
    for token in stack.entra.issued_tokens:
        for output in outputs:
            assert token not in output


async def test_all_routes_pass_with_their_claims_shown(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    path = write_config()
    code, out, err = await run_cli("doctor", "-c", str(path))
    assert code == 0, out + err
    assert out.startswith(f"bearerd doctor — {path}\n")
    assert "route secretapi  (credential emu-secret, client_secret)" in out
    for step in ("config", "identity provider", "token", "upstream"):
        assert f"  ok    {step}" in out
    app = stack.apps["secretapi"]
    assert f"aud={app.app_id_uri}, iss=https://sts.windows.net/{stack.tenant_id}/, ver=1.0" in out
    assert f"appid={stack.secret_client_id}, roles=Api.Access, xms_cc=cp1, exp=" in out
    assert "(App Proxy accepted the token)" in out and out.endswith("all 2 route(s) OK\n")
    assert_no_token(stack, out, err)


async def test_sign_in_redirect_suggests_app_id_and_exits_1(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    stack.apps["secretapi"].accept_only_app_id_audience()
    code, out, err = await run_cli("doctor", "-c", str(write_config()), "secretapi")
    assert code == 1
    assert "route otherapi" not in out  # only the route asked for
    assert "  FAIL  upstream" in out and "to sign-in: App Proxy refused the token" in out
    assert "fix: 1. the app doesn't accept the audience" in out and 'set app_id = "<the App Proxy app' in out
    assert out.endswith("1 of 1 route(s) failing: secretapi\n")
    assert_no_token(stack, out, err)


async def test_json_report_for_scripts(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    app = stack.apps["otherapi"]
    app.registration.assignment_required = True
    code, out, err = await run_cli("doctor", "--json", "-c", str(write_config()))
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    routes = {r["route"]: r for r in report["routes"]}
    assert routes["secretapi"]["ok"] is True
    steps = {s["step"]: s for s in routes["otherapi"]["steps"]}
    assert [s["step"] for s in routes["otherapi"]["steps"]] == ["config", "identity provider", "token", "upstream"]
    assert steps["token"]["facts"]["claims"]["appid"] == stack.cert_client_id
    assert steps["upstream"]["ok"] is False and steps["upstream"]["facts"]["problem"] == "not-assigned"
    assert "app role" in steps["upstream"]["fix"]
    assert_no_token(stack, out, err)


async def test_token_failure_shows_the_aadsts_fix_and_skips_the_probe(
    stack: EmulatorStack, write_config: ConfigWriter
) -> None:
    stack.entra.clients[stack.secret_client_id].secret_expired = True
    code, out, _ = await run_cli("doctor", "-c", str(write_config()), "secretapi")
    assert code == 1
    assert "  FAIL  token              identity provider refused (invalid_client): AADSTS7000222:" in out
    assert "fix: create a new client secret on the app registration" in out
    assert "  skip  upstream" in out


async def test_unreachable_identity_provider_is_named(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    tables = stack_tables(stack)
    tables["credentials.emu-secret"]["ca_file"] = str(tmp_path / "other-ca.pem")
    (tmp_path / "other-ca.pem").write_text(Path(stack.cert_file).read_text())  # a certificate, not the emulator's CA
    code, out, _ = await run_cli("doctor", "-c", str(write_config(tables)), "secretapi")
    assert code == 1
    assert "  FAIL  identity provider  TLS: 127.0.0.1" in out and "add its CA certificate with ca_file" in out
    assert "  skip  token" in out


async def test_unknown_route_and_invalid_config(write_config: ConfigWriter, tmp_path: Path) -> None:
    code, _, err = await run_cli("doctor", "-c", str(write_config()), "nope")
    assert code == 2 and "no route 'nope'" in err and "secretapi" in err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[routes.x]\nmatch = { path_prefix = "/x/" }\nupstream = "https://x/"\ncredential = "c"\napp_id = "1"\n'
    )
    code, out, err = await run_cli("doctor", "--json", "-c", str(bad))
    assert code == 2 and "[routes.x]" in err
    report = json.loads(out)
    assert report["ok"] is False and report["routes"][0]["steps"][0]["step"] == "config"
    assert "app_id" in report["routes"][0]["steps"][0]["summary"]


async def test_a_failing_outbound_proxy_is_named(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    with socket.socket() as closed:  # bound, never listening: the "proxy" refuses every connection
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {"HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        code, out, _ = await run_cli("doctor", "-c", str(write_config()), "secretapi", env=env)
    assert code == 1
    assert "  FAIL  identity provider  the outbound proxy refused or failed the connection" in out
    assert "fix: check HTTPS_PROXY / NO_PROXY" in out


async def test_the_probe_sends_the_routes_set_headers_and_never_prints_them(
    stack: EmulatorStack, write_config: ConfigWriter, tmp_path: Path
) -> None:
    secret = tmp_path / "backend-key"
    secret.write_text("backend-key-0123456789")
    secret.chmod(0o600)
    path = write_config(set_headers={"X-Api-Key": {"file": str(secret)}}, probe_path="/echo/probe")
    code, out, err = await run_cli("doctor", "-c", str(path), "secretapi")
    assert code == 0, out + err
    seen = [r for r in stack.apps["secretapi"].requests_seen if r.raw_path == "/echo/probe"]
    assert len(seen) == 1, ([r.raw_path for r in stack.apps["secretapi"].requests_seen], out)
    probe = seen[0]
    assert dict(probe.headers)["X-Api-Key"] == "backend-key-0123456789"  # as every request of the route has it
    assert "backend-key-0123456789" not in out + err
