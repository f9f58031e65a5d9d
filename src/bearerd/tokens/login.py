"""``bearerd login``: the one interactive moment of a user credential (device code flow).

Prints Microsoft's instruction (URL + code) and a countdown, waits for the user to finish in any
browser, on any device, then stores the result in the credential's cache file — the same file the
daemon reads, under the same lock — so the daemon's next silent refresh finds the account. No
token is ever printed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import msal

from bearerd.config.loader import Config
from bearerd.config.schema import DeviceCodeCredential, Settings
from bearerd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bearerd.tokens import aadsts
from bearerd.tokens.identity import CredentialClient


def _scopes_for(settings: Settings, credential: str) -> list[str]:
    scopes = [s for n, r in settings.routes.items() if r.credential == credential for s in settings.route_scopes(n)]
    # One resource per sign-in: the refresh token then serves the other routes' resources too.
    return scopes[:1]


def login(config: Config, name: str, browser: bool = False) -> int:
    settings = config.settings
    cred = settings.credentials.get(name)
    if not isinstance(cred, DeviceCodeCredential):
        kinds = ", ".join(n for n, c in settings.credentials.items() if isinstance(c, DeviceCodeCredential)) or "none"
        print(f"bearerd: {name!r} is not a device_code credential (device_code credentials: {kinds})", file=sys.stderr)
        return EXIT_USAGE
    scopes = _scopes_for(settings, name)
    if not scopes:
        print(
            f"bearerd: no route uses credential {name!r}; add one so bearerd knows which scope to ask for",
            file=sys.stderr,
        )
        return EXIT_USAGE
    client = CredentialClient.for_config(config, name)
    try:
        cache = client.persistent_cache
        if cache is not None:
            cache.accounts_snapshot()  # reads the file: is it sealed with a keyring we can't reach?
            if cache.sealed_elsewhere is not None:
                print(f"bearerd: cannot store a sign-in: {cache.sealed_elsewhere}", file=sys.stderr)
                return EXIT_FAILED
        app = _public_app(client)
        if app is None:
            return EXIT_FAILED
        try:
            result = _browser_flow(app, scopes) if browser else _device_flow(app, scopes)
        except Exception as exc:
            print(f"bearerd: sign-in failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_FAILED if result is None else _store(config, client, result)
    finally:
        client.close()


def _public_app(client: CredentialClient) -> msal.PublicClientApplication | None:
    try:
        app = client.application()
    except Exception as exc:
        print(f"bearerd: cannot reach the identity provider: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    assert isinstance(app, msal.PublicClientApplication)  # noqa: S101 - device_code credentials
    return app


def _browser_flow(app: msal.PublicClientApplication, scopes: list[str]) -> dict[str, Any] | None:
    """Authorization code + PKCE with a localhost redirect: MSAL opens the browser and listens."""
    print("Opening the sign-in page in your browser (finish there; this waits up to 5 minutes)…", flush=True)
    try:
        result: dict[str, Any] = app.acquire_token_interactive(scopes, prompt="select_account", timeout=300)
    except KeyboardInterrupt:
        print("\nbearerd: sign-in cancelled", file=sys.stderr)
        return None
    return result


def _device_flow(app: msal.PublicClientApplication, scopes: list[str]) -> dict[str, Any] | None:
    flow = app.initiate_device_flow(scopes=scopes)
    if "user_code" not in flow:
        print(f"bearerd: the identity provider refused to start a sign-in: {_reason(flow)}", file=sys.stderr)
        return None
    print(flow["message"], flush=True)
    done = threading.Event()
    countdown = threading.Thread(target=_countdown, args=(float(flow["expires_at"]), done), daemon=True)
    countdown.start()
    try:
        result: dict[str, Any] = app.acquire_token_by_device_flow(flow)
    except KeyboardInterrupt:
        print("\nbearerd: sign-in cancelled", file=sys.stderr)
        return None
    finally:
        done.set()
        countdown.join()
    return result


def _reason(result: dict[str, Any]) -> str:
    text = str(result.get("error_description", ""))
    explanation = aadsts.explain(result.get("error_codes"), text)
    if explanation is not None:
        return f"{result.get('error')}: {explanation.line()}"
    description = text.strip().splitlines()
    return f"{result.get('error')}: {description[0] if description else ''}"


def _store(config: Config, client: CredentialClient, result: dict[str, Any]) -> int:
    if "access_token" not in result:
        print(f"bearerd: sign-in failed: {_reason(result)}", file=sys.stderr)
        return EXIT_FAILED
    cache = client.persistent_cache
    assert cache is not None  # noqa: S101 - device_code credentials
    with cache.locked(prefer_ours=True):  # merge with what the daemon wrote meanwhile; write atomically, 0600
        cache.has_state_changed = True
    who = (result.get("id_token_claims") or {}).get("preferred_username", "the user")
    print(f"Signed in as {who}. Stored in {cache.path} ({cache.protection}); the daemon picks it up within seconds.")
    if config.settings.cache.backend == "redis":
        shared = asyncio.run(_share_with_fleet(config, client))
        print(
            "Shared with the fleet (Redis): every replica can use it now."
            if shared
            else "Not shared with the fleet (Redis unreachable): replicas get it when this one next refreshes."
        )
    return EXIT_OK


async def _share_with_fleet(config: Config, client: CredentialClient) -> bool:
    from bearerd.tokens.fleet import Fleet  # the Redis client, only for fleets
    from bearerd.tokens.fleet_signin import SharedSignIn

    fleet = Fleet.for_config(config)
    try:
        await fleet.start()
        return fleet.connected is True and await SharedSignIn(fleet, client).publish()
    finally:
        await fleet.close()


def _countdown(expires_at: float, done: threading.Event) -> None:
    """A live countdown on a terminal, a line a minute otherwise, until sign-in completes or expires."""
    tty = sys.stderr.isatty()
    last_minute = -1
    while not done.wait(1.0):
        left = max(0, int(expires_at - time.time()))
        if tty:
            print(f"\rwaiting for sign-in… {left // 60:d}:{left % 60:02d} left ", end="", file=sys.stderr, flush=True)
        elif left // 60 != last_minute:
            last_minute = left // 60
            print(f"waiting for sign-in… {left // 60} min left", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
