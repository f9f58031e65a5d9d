"""AADSTS codes explained wherever a token fails: the 503 problem, /readyz, the token.acquire_failed
line — the code, its meaning and the fix, never a token. Refusals the emulator has state for
(wrong secret, unknown app or tenant…) come from that state; the others (Conditional Access,
MFA, consent) are Entra's answers injected on request."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack, Fault
from bearerd.errors import ProxyError
from bearerd.tokens import aadsts
from bearerd.tokens.registry import Providers
from support.configs import ConfigWriter, render_toml, stack_tables, user_config
from support.inprocess import start
from support.processes import run_login
from support.wire import log_events

LISTED = [50105, 65001, 53000, 53003, 50076, 50079, 7000215, 7000222, 700016, 90002, 700027, 70011, 500011, 50173,
          70043]  # fmt: skip


@pytest.mark.parametrize("code", LISTED)
async def test_the_explanation_reaches_the_problem_readyz_and_the_log(
    stack: EmulatorStack, write_config: ConfigWriter, log_stream: io.StringIO, code: int
) -> None:
    stack.entra.faults.set(Fault(aadsts=code))
    explanation = aadsts.explain_code(code)
    assert explanation is not None
    async with start(load_config(write_config())) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 503
            problem = await resp.json()
        async with running.session.get(running.admin + "/readyz") as resp:
            ready = await resp.json()
    assert problem["type"] == "urn:bearerd:problem:token-unavailable"
    for shown in (problem["detail"], ready["routes"]["secretapi"]["last_error"]):
        assert f"AADSTS{code}: {explanation.meaning} — fix: " in shown
    failed = [e for e in log_events(log_stream) if e.get("event") == "token.acquire_failed"]
    assert failed and f"AADSTS{code}: {explanation.meaning}" in failed[0]["error"]
    for token in stack.entra.issued_tokens:
        assert token not in problem["detail"] and token not in str(ready)


async def failure(stack: EmulatorStack, tmp_path: Path, **changes: object) -> str:
    """The message a route's first acquisition fails with, for a credential changed by ``changes``."""
    tables = stack_tables(stack)
    scopes = changes.pop("scopes", None)
    if scopes is not None:
        tables["routes.secretapi"]["scopes"] = scopes
    tables["credentials.emu-secret"].update(changes)
    path = tmp_path / "c.toml"
    path.write_text(render_toml(tables))
    providers = Providers(load_config(path))
    try:
        provider = providers.for_route("secretapi")
        with pytest.raises(ProxyError):
            await provider.fetch()
        error = provider.status().last_error
        assert error is not None
        return error
    finally:
        await providers.aclose()


async def test_refusals_the_emulator_has_state_for_are_explained(stack: EmulatorStack, tmp_path: Path) -> None:
    wrong_secret = tmp_path / "wrong-secret"
    wrong_secret.write_text("not-the-secret")
    wrong_secret.chmod(0o600)
    cases: list[tuple[dict[str, object], int]] = [
        ({"client_secret_file": str(wrong_secret)}, 7000215),
        ({"client_id": "00000000-0000-4000-8000-0000000000ff"}, 700016),
        ({"authority": stack.authority.rsplit("/", 1)[0] + "/not-our-tenant"}, 90002),
        ({"scopes": ["https://nowhere.example//.default"]}, 500011),
        ({"scopes": ["user.read"]}, 70011),
    ]
    for changes, code in cases:
        message = await failure(stack, tmp_path, **changes)
        assert f"AADSTS{code}: " in message and " — fix: " in message, (code, message)
    stack.entra.clients[stack.secret_client_id].secret_expired = True
    assert "AADSTS7000222: the client secret has expired — fix: create a new client secret" in await failure(
        stack, tmp_path
    )


async def test_certificate_not_registered_is_700027(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    from bearerd.emulator.pki import make_client_certificate

    make_client_certificate(stack.cert_file, stack.key_file, "not-registered")  # a new key pair on the same paths
    tables = stack_tables(stack, credential="emu-cert")
    providers = Providers(load_config(write_config(tables)))
    try:
        provider = providers.for_route("secretapi")
        with pytest.raises(ProxyError):
            await provider.fetch()
        assert "AADSTS700027: " in (provider.status().last_error or "")
        assert "upload certificate_file's public certificate" in (provider.status().last_error or "")
    finally:
        await providers.aclose()


async def test_user_not_assigned_and_revoked_sign_in(stack: EmulatorStack, tmp_path: Path) -> None:
    path, config = user_config(stack, tmp_path)
    assert (await run_login(stack, path))[0] == 0
    registration = stack.apps["secretapi"].registration
    registration.assignment_required = True  # after the sign-in: the next refresh is refused
    async with start(config) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        problem = await resp.json()
    assert resp.status == 503 and problem["type"] == "urn:bearerd:problem:token-unavailable"
    assert "AADSTS50105: the signed-in user is not assigned" in problem["detail"]
    assert "fix: assign the user" in problem["detail"]

    registration.assign(stack.user)
    stack.entra.users.revoke(stack.user)
    async with start(config) as running, running.session.get(running.url("/secretapi/api/status")) as resp:
        problem = await resp.json()
    assert resp.status == 503 and problem["type"] == "urn:bearerd:problem:login-required"
    assert f"AADSTS50173: the refresh token was revoked (password change, admin revocation) — fix: sign in again: " \
           f"`bearerd login alice -c {path}`" in problem["detail"]  # fmt: skip


async def test_login_of_an_unassigned_user_says_why(stack: EmulatorStack, tmp_path: Path) -> None:
    path, _ = user_config(stack, tmp_path)
    stack.apps["secretapi"].registration.assignment_required = True
    code, _, err = await run_login(stack, path)
    assert code == 1 and "AADSTS50105: the signed-in user is not assigned to the App Proxy app" in err
