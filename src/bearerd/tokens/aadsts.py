"""AADSTS codes explained: what an Entra refusal means and what fixes it, in one table.

Entra's token endpoint answers a refusal with ``error_codes`` (and ``AADSTSnnnn:`` at the start of
``error_description``); the code names the cause far more precisely than the OAuth ``error``
(``invalid_client`` covers a wrong secret, an expired one and an unregistered certificate). An
operator at a terminal needs the cause and the fix, not the number, so every place a token fails
— the 503 detail, ``/readyz``, the ``token.acquire_failed`` line, ``bearerd check --acquire``,
``bearerd doctor`` and the status page — shows the line ``explain`` builds, through
``tokens/identity.py``. Meanings follow Microsoft's "Microsoft Entra authentication and
authorization error codes" reference (learn.microsoft.com/entra/identity-platform/
reference-error-codes); the fixes are written for bearerd's settings. Pure: no I/O, and nothing
here ever sees a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_CODE_RE = re.compile(r"AADSTS(\d{4,9})")
_LOGIN = "sign in again: `{login}`"
GENERIC_LOGIN = "bearerd login CREDENTIAL -c FILE"


@dataclass(frozen=True, slots=True)
class Explanation:
    code: int
    meaning: str
    fix: str

    @property
    def needs_login(self) -> bool:
        """Whether signing the user in again is the fix (else retrying a sign-in can't help)."""
        return "bearerd login" in self.fix

    def line(self) -> str:
        """One line for logs, problem details and terminals: code, meaning, fix."""
        return f"AADSTS{self.code}: {self.meaning} — fix: {self.fix}"


_TABLE: dict[int, tuple[str, str]] = {
    50105: (
        "the signed-in user is not assigned to the App Proxy app, which requires assignment",
        "assign the user (or a group they are in) to the app: Entra → Enterprise apps → the app → Users and groups",
    ),
    501051: (
        "the application is not assigned to a role of the App Proxy app, which requires assignment",
        "grant bearerd's app an app role of the App Proxy app (API permissions → Application permissions, admin "
        "consent), or assign its service principal",
    ),
    65001: (
        "consent is missing: the user or an administrator has not allowed this client app to call the App Proxy app",
        "grant admin consent for the client's user_impersonation permission; for Azure CLI or another public "
        "client, authorize that client app on the App Proxy app (Expose an API → Add a client application)",
    ),
    53000: (
        "Conditional Access requires a compliant or managed device, and this one is not",
        "run bearerd where the device is compliant (Intune, hybrid join), or use an app-only credential "
        "(client_secret, certificate, workload identity, managed identity) that device policies don't apply to",
    ),
    53003: (
        "Conditional Access blocked the sign-in",
        "look up the sign-in in Entra's sign-in logs to see which policy; an app-only credential (client_secret, "
        "certificate, workload identity, managed identity) is outside user policies, or ask for an exclusion",
    ),
    50076: (
        "multi-factor authentication is required (new location, or the policy changed)",
        _LOGIN + " and complete MFA",
    ),
    50079: ("the user must register for multi-factor authentication", _LOGIN + " and register MFA"),
    50173: ("the refresh token was revoked (password change, admin revocation)", _LOGIN),
    70043: ("the refresh token expired (Conditional Access sign-in frequency)", _LOGIN),
    700082: ("the refresh token expired from inactivity", _LOGIN),
    7000215: (
        "the client secret is wrong",
        "put the secret's *Value* (not its Secret ID) in client_secret_file; create a new secret if it is lost",
    ),
    7000222: (
        "the client secret has expired",
        "create a new client secret on the app registration (Certificates & secrets) and replace the file",
    ),
    700016: (
        "no application with this client_id exists in the tenant",
        "check client_id and tenant_id (or authority); a multi-tenant app needs admin consent in this tenant",
    ),
    90002: ("the tenant was not found", "check tenant_id (the directory's GUID or a verified domain) or authority"),
    700027: (
        "the client assertion's signature failed: its certificate is not registered on the app",
        "upload certificate_file's public certificate to the app registration (Certificates & secrets)",
    ),
    70011: (
        "the scope is not valid",
        "app-only tokens need exactly one scope ending in /.default; set app_id (or audience) instead of scopes",
    ),
    1002012: (
        "a client-credentials token needs a scope ending in /.default",
        "set app_id (or audience), or end the scope in /.default",
    ),
    500011: (
        "Entra found no application for this scope's resource (wrong app ID URI, or the app is in another tenant)",
        'set app_id = "<the App Proxy app\'s application (client) ID>" instead of the URI form',
    ),
    700024: ("the client assertion is outside its validity period", "check the clock, and that token_file rotates"),
    70021: (
        "no federated credential matches the assertion's issuer and subject",
        "add a federated credential for the cluster's OIDC issuer and the service account on the app registration",
    ),
    700212: (
        "the federated assertion's audience is not the one the federated credential expects",
        "issue the service-account token for audience api://AzureADTokenExchange",
    ),
    7000218: (
        "the request carried no client credential",
        "give the credential its client_secret_file, certificate_file or token_file",
    ),
    50011: (
        "the redirect URI is not registered",
        "add http://localhost under Mobile and desktop applications on the public client app",
    ),
    50058: ("no user is signed in", _LOGIN),
    50126: ("the user name or password is wrong", _LOGIN),
    50020: (
        "the user's account is from another tenant and is not a guest here",
        "sign in with an account of this tenant, or invite the user as a guest",
    ),
}


def explain_code(code: int, login_command: str = GENERIC_LOGIN) -> Explanation | None:
    """``code`` explained; ``login_command`` is the credential's own `bearerd login` line."""
    entry = _TABLE.get(code)
    if entry is None:
        return None
    meaning, fix = entry
    return Explanation(code, meaning, fix.replace("{login}", login_command))


def codes_in(error_codes: Iterable[object] | None, description: str) -> list[int]:
    """The AADSTS codes of an answer: its ``error_codes`` first, then any ``AADSTSnnnn`` in the text."""
    found: list[int] = []
    for value in error_codes or ():
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            found.append(int(value))
    found.extend(int(m) for m in _CODE_RE.findall(description))
    return list(dict.fromkeys(found))


def explain(
    error_codes: Iterable[object] | None, description: str, login_command: str = GENERIC_LOGIN
) -> Explanation | None:
    """The explanation of the first known code of an answer, or None."""
    for code in codes_in(error_codes, description):
        explanation = explain_code(code, login_command)
        if explanation is not None:
            return explanation
    return None


def known_codes() -> list[int]:
    return sorted(_TABLE)
