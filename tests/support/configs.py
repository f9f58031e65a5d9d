"""Config files for tests: TOML rendering and the standard tables for an emulator stack.

Every test that needs a config starts from ``stack_tables`` (two apps, a secret and a
certificate credential) and overrides what it is about, so no test carries a copied config block.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bearerd.config.loader import Config, load_config
from bearerd.emulator import EmulatorStack

TEST_APPS = ("secretapi", "otherapi")
# Every variable MSAL reads to find a managed-identity token service: tests strip inherited ones and point
# the ones they need at the emulator (else MSAL asks 169.254.169.254).
MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
)
Tables = dict[str, dict[str, Any]]
ConfigWriter = Callable[..., Path]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def render_toml(tables: Tables, top: dict[str, Any] | None = None) -> str:
    out = [f"{k} = {toml_value(v)}" for k, v in (top or {}).items()]
    for name, fields in tables.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in fields.items())
        out.append("")
    return "\n".join(out)


def write_tables(path: Path, tables: Tables, top: dict[str, Any] | None = None) -> Path:
    path.write_text(render_toml(tables, top))
    return path


def stack_tables(stack: EmulatorStack, **route_overrides: Any) -> Tables:
    """A config for the stack: a secret credential, a certificate credential, one route per app."""
    app = stack.apps["secretapi"]
    other = stack.apps["otherapi"]
    route: dict[str, Any] = {
        "match": {"path_prefix": "/secretapi/"},
        "upstream": app.external_url,
        "credential": "emu-secret",
        "scopes": [app.scope],
    }
    route.update(route_overrides)
    return {
        "server": {"listen": ["127.0.0.1:0"], "admin": "127.0.0.1:0", "shutdown_timeout_s": 5},
        "credentials.emu-secret": {
            "kind": "client_secret",
            "authority": stack.authority,
            "client_id": stack.secret_client_id,
            "client_secret_file": str(stack.client_secret_file),
            "ca_file": str(stack.ca_file),
        },
        "credentials.emu-cert": {
            "kind": "certificate",
            "authority": stack.authority,
            "client_id": stack.cert_client_id,
            "certificate_file": str(stack.cert_file),
            "private_key_file": str(stack.key_file),
            "ca_file": str(stack.ca_file),
        },
        "routes.secretapi": route,
        "routes.otherapi": {
            "match": {"path_prefix": "/otherapi/"},
            "upstream": other.external_url,
            "credential": "emu-cert",
            "scopes": [other.scope],
        },
    }


def federated_credential(stack: EmulatorStack) -> dict[str, Any]:
    return {
        "kind": "client_assertion",
        "authority": stack.authority,
        "client_id": stack.federated_client_id,
        "token_file": str(stack.federated_token_file),
        "ca_file": str(stack.ca_file),
    }


def user_tables(stack: EmulatorStack) -> Tables:
    """The standard tables with the secretapi route on a signed-in user ("alice", device code)."""
    app = stack.apps["secretapi"]
    tables = stack_tables(stack, credential="alice", scopes=[app.app_id_uri + "/user_impersonation"])
    tables["credentials.alice"] = {
        "kind": "device_code",
        "authority": stack.authority,
        "client_id": stack.public_client_id,
        "ca_file": str(stack.ca_file),
    }
    return tables


def user_config(stack: EmulatorStack, tmp_path: Path) -> tuple[Path, Config]:
    path = write_tables(tmp_path / "user.toml", user_tables(stack), {"state_dir": str(tmp_path / "state")})
    return path, load_config(path)


def intercept_tables(stack: EmulatorStack, *, by_name: bool = False, **server: Any) -> Tables:
    """``stack_tables`` with ``[server] intercept_https = true`` (and ``server`` settings). ``by_name``: the
    secretapi route's upstream is named ``https://localhost:PORT/`` — the same app, reached by a host name,
    so clients send SNI — instead of its ``https://127.0.0.1:PORT/`` external URL (no SNI for IP addresses)."""
    tables = stack_tables(stack)
    if by_name:
        route = tables["routes.secretapi"]
        route["upstream"] = route["upstream"].replace("https://127.0.0.1:", "https://localhost:")
    tables["server"].update({"intercept_https": True, **server})
    return tables


def write_intercept_config(stack: EmulatorStack, tmp_path: Path, tables: Tables | None = None) -> Path:
    """The tables (default ``intercept_tables(stack)``) with a state directory of the test's own: the
    local CA lives in ``tmp_path / "state" / "tls"``."""
    return write_tables(
        tmp_path / "bearerd.toml", tables or intercept_tables(stack), {"state_dir": str(tmp_path / "state")}
    )


def local_ca_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tls" / "local-ca.pem"
