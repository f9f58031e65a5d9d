"""What the process environment says beyond the config file: egress proxies and the service manager.

The loader reads these once (it is the only module that reads ``os.environ``) and hands them
down as frozen values, so nothing else ever consults the environment on its own.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Egress:
    """Outbound proxy settings taken from the environment (corporate egress)."""

    https_proxy: str | None = None
    http_proxy: str | None = None
    no_proxy: str | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Egress:
        return cls(
            https_proxy=env.get("HTTPS_PROXY") or env.get("https_proxy") or None,
            http_proxy=env.get("HTTP_PROXY") or env.get("http_proxy") or None,
            no_proxy=env.get("NO_PROXY") or env.get("no_proxy") or None,
        )

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for an outbound request, honouring NO_PROXY like curl and requests do."""
        parts = urlsplit(url)
        proxy = self.https_proxy if parts.scheme == "https" else self.http_proxy
        if not proxy or not parts.hostname:
            return None
        if self.no_proxy and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            parts.netloc, {"no": self.no_proxy}
        ):
            return None
        return proxy


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the service manager tells the process through its environment (systemd)."""

    notify_socket: str | None = None
    watchdog_usec: int | None = None
    watchdog_pid: int | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Runtime:
        return cls(
            notify_socket=env.get("NOTIFY_SOCKET") or None,
            watchdog_usec=int(env["WATCHDOG_USEC"]) if env.get("WATCHDOG_USEC", "").isdigit() else None,
            watchdog_pid=int(env["WATCHDOG_PID"]) if env.get("WATCHDOG_PID", "").isdigit() else None,
        )


@dataclass(frozen=True, slots=True)
class ManagedIdentityHost:
    """Which local token service MSAL's managed-identity client will ask, read off the variables
    the Azure host sets — the same choice MSAL makes (``msal.managed_identity``) — so a failure can
    say which service refused and which variables to set. Never holds ``IDENTITY_HEADER`` or
    ``MSI_SECRET``: only whether they are set."""

    source: str = "imds"  # service_fabric | app_service | azure_ml | arc | cloud_shell | imds
    endpoint: str | None = None  # the URL the host gave (IDENTITY_ENDPOINT / MSI_ENDPOINT), if any
    imds_host: str | None = None  # AZURE_POD_IDENTITY_AUTHORITY_HOST, instead of 169.254.169.254

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> ManagedIdentityHost:
        endpoint = env.get("IDENTITY_ENDPOINT")
        if endpoint and "IDENTITY_HEADER" in env:
            source = "service_fabric" if "IDENTITY_SERVER_THUMBPRINT" in env else "app_service"
            return cls(source, endpoint)
        if env.get("MSI_ENDPOINT") and "MSI_SECRET" in env:
            return cls("azure_ml", env["MSI_ENDPOINT"])
        if endpoint and "IMDS_ENDPOINT" in env:
            return cls("arc", endpoint)
        if env.get("AZUREPS_HOST_ENVIRONMENT", "").startswith("cloud-shell"):
            return cls("cloud_shell", env.get("MSI_ENDPOINT"))
        return cls("imds", None, env.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or None)


def default_state_dir(env: Mapping[str, str]) -> Path:
    """systemd's StateDirectory, else the XDG state directory."""
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "/var/lib")) / ".local" / "state")
    return Path(base) / "bearerd"
