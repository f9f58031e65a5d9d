"""Is this the token it should be? Checked the way App Proxy checks it (the emulator's verification)."""

from __future__ import annotations

from typing import Any

from bearerd.emulator import AppProxyEmulator


def accepted(app: AppProxyEmulator, token: str) -> dict[str, Any]:
    """The claims of ``token`` if App Proxy would accept it for ``app``; fails the test otherwise."""
    verdict = app.verify_token(token)
    assert isinstance(verdict, dict), f"App Proxy would refuse this token: {verdict}"
    return verdict
