"""What to do about a failed acquisition, said to the person who ran a one-shot command.

The daemon retries on its own and says when (``retrying in N s``); ``bearerd token`` and
``bearerd check --acquire`` ask once and exit, so what they print must say what failed and what
fixes it — in terms of the setting to change or the thing to do in Entra — never promise a
retry that no process will make.
"""

from __future__ import annotations

from bearerd.tokens.results import IdentityProviderError, SignInRequired

_SCOPES = (
    "check the route's scopes: the App ID URI of the App Proxy app + /.default (App Proxy URIs end in /, "
    "hence //.default), and that the app exists in this tenant"
)
# By Entra's AADSTS number: the most precise thing an answer says.
_BY_AADSTS: dict[int, str] = {
    7000215: "the client secret is wrong: put the current value (not the secret's ID) in client_secret_file",
    7000222: "the client secret has expired: create a new one on the app registration and update client_secret_file",
    700027: "the certificate is not registered on the app registration: upload its public part (Certificates & "
    "secrets) or point certificate_file at the registered one",
    700024: "the federated token in token_file is outside its validity: check that the platform rotates it",
    700016: "no app registration with this client_id in the tenant: check client_id and tenant_id (or authority)",
    7000112: "the application is disabled in Entra: enable it (Enterprise applications → Properties)",
    50105: "the signed-in user or app is not assigned to the application: assign it (Enterprise applications → "
    "Users and groups)",
    65001: "consent is missing: grant admin consent for the API permission on the app registration",
    500011: _SCOPES,
    70011: _SCOPES,
    53003: "Conditional Access blocked the sign-in: ask the tenant's administrator for an exception",
}
_BY_CODE: dict[str, str] = {
    "invalid_client": "check the credential's secret, certificate or federated token against its app registration",
    "unauthorized_client": "check client_id and tenant_id (or authority): the app must be registered in this tenant",
    "invalid_scope": _SCOPES,
    "invalid_resource": _SCOPES,
    "timeout": "the identity provider did not answer in time: check the network path, or raise timeout_s",
    "unreachable": "check the authority URL, DNS and the network path (HTTPS_PROXY/NO_PROXY); for a certificate "
    "error, add the CA with ca_file",
    "server_error": "the identity provider is failing: try again later",
    "temporarily_unavailable": "the identity provider is throttling or busy: try again later",
    "malformed": "the answer was not an identity provider's: check the authority URL (https://HOST/TENANT)",
    "assertion_file": "check token_file: it must be readable by bearerd",
    "bug": "this is a bug in bearerd: please report it with the log line token.acquire_crashed",
    "mi_unauthorized": "set what the message names, as the host gives it",
    "mi_unavailable": "run where a managed identity is assigned, or choose another kind",
}


def fix_for(error: IdentityProviderError, credential: str) -> str:
    """The fix for ``error`` of ``[credentials.<credential>]``, as one sentence."""
    if isinstance(error, SignInRequired) and "run: bearerd login" in str(error):
        return "sign in with the command above"
    for code in error.aadsts:
        if code in _BY_AADSTS:
            return f"[credentials.{credential}]: {_BY_AADSTS[code]}"
    fix = _BY_CODE.get(error.code)
    if fix is not None:
        return f"[credentials.{credential}]: {fix}"
    return f"check [credentials.{credential}] and its app registration"
