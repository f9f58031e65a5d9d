"""Managed identity's failures as what happened and what to set — instead of MSAL's relabelling.

MSAL turns every error of App Service's identity endpoint into ``invalid_scope`` with
``"<status>, <message>"`` as its description (a wrong ``IDENTITY_HEADER`` reads "invalid_scope:
401, Unauthorized"), and a machine with no managed identity at all — where the Azure instance
metadata service (IMDS, 169.254.169.254) doesn't answer, or something else does — ends as
"unreachable" or "not JSON or an invalid discovery document". Here, at the boundary
(``identity.py``), the failure is said again with the service that was asked (from the variables
the host set, ``config.environment.ManagedIdentityHost``), what it answered, and what to set.
"""

from __future__ import annotations

from bearerd.config.environment import ManagedIdentityHost
from bearerd.tokens.results import IdentityProviderError

IMDS_ADDRESS = "169.254.169.254"
VARIABLES = (
    "IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service, Functions, Container Apps), "
    "IDENTITY_ENDPOINT + IMDS_ENDPOINT (Azure Arc), MSI_ENDPOINT + MSI_SECRET (Azure Machine Learning)"
)
_SERVICES = {
    "app_service": "the App Service identity endpoint",
    "service_fabric": "the Service Fabric identity endpoint",
    "azure_ml": "the Azure Machine Learning identity endpoint",
    "arc": "the Azure Arc identity endpoint",
    "cloud_shell": "Cloud Shell's identity endpoint",
    "imds": "the Azure instance metadata service (IMDS)",
}
_HEADER_SOURCES = frozenset({"app_service", "service_fabric", "azure_ml"})
_NO_ANSWER = frozenset({"unreachable", "timeout", "malformed", "http"})


def service(host: ManagedIdentityHost) -> str:
    """Which token service was asked, and where."""
    name = _SERVICES.get(host.source, "the managed-identity endpoint")
    where = host.endpoint or (host.imds_host if host.source == "imds" else None)
    if host.source == "imds" and where is None:
        where = f"http://{IMDS_ADDRESS}"
    return f"{name} at {where}" if where else name


def _their_words(error: IdentityProviderError) -> str:
    """What the endpoint itself said: MSAL's description after ``refused: <code>: ``."""
    text = str(error)
    return text.split(": ", 2)[2] if text.startswith("identity provider refused: ") and text.count(": ") >= 2 else text


def _what_came(error: IdentityProviderError) -> str:
    if error.code == "malformed":
        return "it answered, but not as a token service does"
    if error.code == "timeout":
        return "no answer in time"
    return str(error).removeprefix("identity provider ")


def explain(
    error: IdentityProviderError, host: ManagedIdentityHost, status: int | None, resource: str
) -> IdentityProviderError:
    """``error`` of a managed-identity acquisition, said as what happened and what to set."""
    asked = service(host)
    if host.source in _HEADER_SOURCES and status in (401, 403):
        secret = "MSI_SECRET" if host.source == "azure_ml" else "IDENTITY_HEADER"
        return IdentityProviderError(
            f"{asked} refused bearerd's request ({_their_words(error)}): {secret} is not the one this host "
            f"issued — give bearerd the host's own {secret} and endpoint variable unchanged (the platform sets "
            "them for the app's process; they change when it restarts)",
            code="mi_unauthorized",
            permanent=True,
        )
    if host.source == "imds" and error.code in _NO_ANSWER:
        return IdentityProviderError(
            f"no managed identity here: none of {VARIABLES} is set, and {asked} gave no token "
            f"({_what_came(error)}) — run bearerd on an Azure VM or scale set with a managed identity assigned, "
            "pass the host's variables through to bearerd (systemd: PassEnvironment=, containers: -e), or use another "
            "credential kind",
            code="mi_unavailable",
        )
    if error.code in _NO_ANSWER:
        variable = "MSI_ENDPOINT" if host.source == "azure_ml" else "IDENTITY_ENDPOINT"
        return IdentityProviderError(
            f"{asked} gave no token ({_what_came(error)}) — {variable} must be the endpoint this host set, passed to "
            "bearerd unchanged",
            code=error.code,
        )
    if error.code in ("invalid_scope", "invalid_resource", "invalid_request") and status is not None:
        return IdentityProviderError(
            f"{asked} issued no token for resource {resource!r} ({status}: {_their_words(error)}) — the route's "
            "scopes must be exactly one App ID URI + /.default, the identity must be granted the app's role, and "
            "a user-assigned identity (client_id, object_id or resource_id) must be attached to this host",
            code=error.code,
            permanent=error.permanent,
            aadsts=error.aadsts,
        )
    return error
