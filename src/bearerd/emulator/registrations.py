"""The tenant's App Proxy app registrations, as the token issuer and App Proxy both see them.

Publishing an app through App Proxy creates an app registration whose application (client) ID is
a GUID and whose app ID URI is the app's external URL with its trailing ``/`` (Microsoft's
"Add an on-premises application for remote access through application proxy"). What this
module models, because real tenants differ here and bearerd's scope forms depend on it:

* **Resource lookup** — a scope names the app by its GUID or by one of its identifier URIs,
  exactly as registered (``https://x//.default`` names ``https://x/``, ``https://x/.default``
  names ``https://x``, a different identifier — Entra answers AADSTS500011 for an unknown one).
* **Access token version** (the manifest's ``requestedAccessTokenVersion``, Microsoft's "Access
  tokens" reference): v1 tokens carry ``aud`` = the identifier the client asked for, ``iss`` =
  ``https://sts.windows.net/<tid>/``, ``appid``/``appidacr``; v2 tokens carry ``aud`` = the app's
  GUID whichever identifier was asked for, ``iss`` = ``https://login.microsoftonline.com/<tid>/v2.0``,
  ``azp``/``azpacr``.
* **Assignment required** (Enterprise apps → Properties → "Assignment required?"): only assigned
  users and apps may use the app. A user who isn't gets AADSTS50105 at token time; a token issued
  before the assignment was removed, or an app-only token of an unassigned app, meets App Proxy's
  403 page ("Troubleshoot 'corporate app can't be accessed'": *Forbidden* — the user isn't assigned).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


def app_id_for(name: str) -> str:
    """A stable application (client) ID for an emulated app, from its name."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.appproxy.emulator"))


@dataclass
class AppRegistration:
    app_id: str
    identifier_uris: list[str]
    access_token_version: int = 1
    assignment_required: bool = False
    # Who is assigned: client IDs of apps (app-only tokens) and user names (delegated tokens).
    assigned: set[str] = field(default_factory=set)

    @property
    def app_id_uri(self) -> str:
        return self.identifier_uris[0]

    def identifiers(self) -> list[str]:
        return [self.app_id, *self.identifier_uris]

    def audience_for(self, requested: str) -> str:
        """The ``aud`` of a token for this app requested by ``requested`` (GUID or identifier URI)."""
        return self.app_id if self.access_token_version == 2 else requested

    def may_use(self, principal: str) -> bool:
        return not self.assignment_required or principal in self.assigned

    def assign(self, principal: str) -> None:
        self.assigned.add(principal)

    def unassign(self, principal: str) -> None:
        self.assigned.discard(principal)


class Registrations:
    """Every app registration of the tenant, found by any of its identifiers."""

    def __init__(self) -> None:
        self._by_app_id: dict[str, AppRegistration] = {}
        self._by_uri: dict[str, AppRegistration] = {}

    def add(self, registration: AppRegistration) -> AppRegistration:
        self._by_app_id[registration.app_id.lower()] = registration
        for uri in registration.identifier_uris:
            self._by_uri[uri] = registration
        return registration

    def add_identifier(self, registration: AppRegistration, uri: str) -> None:
        """Another identifier URI on the app (e.g. the external URL without its trailing slash)."""
        registration.identifier_uris.append(uri)
        self._by_uri[uri] = registration

    def find(self, identifier: str) -> AppRegistration | None:
        """The app a scope's resource names: a GUID in any case, a URI exactly as registered."""
        return self._by_uri.get(identifier) or self._by_app_id.get(identifier.lower())

    def __contains__(self, identifier: object) -> bool:
        return isinstance(identifier, str) and self.find(identifier) is not None
