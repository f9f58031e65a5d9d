"""The scopes a route's token is requested for: derived once, here, from what the route says.

A route names the App Proxy app its token is for in one of four ways, because real tenants
differ in which one Entra and App Proxy accept (see the README, "Which scope form"):

* ``scopes`` — passed to Entra exactly as written (the escape hatch: any app, any scope);
* ``app_id`` — the App Proxy app's application (client) ID: ``<GUID>/.default`` (user
  credentials: ``<GUID>/user_impersonation``). Works whether the app issues v1 or v2 tokens and
  whatever its app ID URI is, which is why it fixes App Proxy's sign-in redirect for apps that
  refuse the URI form;
* ``audience`` — the app ID URI as Logic Apps' "Audience" field has it
  (``https://app-contoso.msappproxy.net`` → ``https://app-contoso.msappproxy.net/.default``; a bare
  host name gets ``https://``);
* none of them — the upstream's external URL, which is App Proxy's default app ID URI
  (``https://app-contoso.msappproxy.net/`` → ``https://app-contoso.msappproxy.net//.default``).

Everything that needs a route's scopes — the token providers, ``bearerd login``, the managed
identity check, ``bearerd doctor`` — asks ``Settings.route_scopes``, which calls this module, so
the derivation can't differ between them. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Literal

ScopeForm = Literal["scopes", "app_id", "audience", "upstream"]
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
APP_ONLY_SUFFIX = "/.default"
DELEGATED_SUFFIX = "/user_impersonation"


def scope_form(scopes: list[str] | None, app_id: str | None, audience: str | None) -> ScopeForm:
    """Which of the four forms a route uses (the schema allows at most one to be set)."""
    if scopes:
        return "scopes"
    if app_id:
        return "app_id"
    if audience:
        return "audience"
    return "upstream"


def audience_uri(audience: str) -> str:
    """The app ID URI an ``audience`` names: as written, with ``https://`` before a bare host name."""
    return audience if "://" in audience else "https://" + audience


def upstream_app_id_uri(upstream: str) -> str:
    """App Proxy's default app ID URI for an app: its external URL, ending in ``/``."""
    return upstream if upstream.endswith("/") else upstream + "/"


def effective_scopes(
    *, scopes: list[str] | None, app_id: str | None, audience: str | None, upstream: str, delegated: bool
) -> tuple[str, ...]:
    """The scopes to request. ``delegated``: a signed-in user's token (``user_impersonation``),
    else an app-only one (``.default``)."""
    form = scope_form(scopes, app_id, audience)
    if form == "scopes":
        assert scopes  # noqa: S101 - scope_form said so
        return tuple(scopes)
    suffix = DELEGATED_SUFFIX if delegated else APP_ONLY_SUFFIX
    if form == "app_id":
        assert app_id  # noqa: S101 - scope_form said so
        return (app_id.lower() + suffix,)
    if form == "audience":
        assert audience  # noqa: S101 - scope_form said so
        return (audience_uri(audience) + suffix,)
    return (upstream_app_id_uri(upstream) + suffix,)


def resource_of(scope: str) -> str:
    """The v1 ``resource`` a managed identity asks for: the scope without ``/.default``."""
    return scope.removesuffix(APP_ONLY_SUFFIX)
