"""What to do about a failed acquisition, said to the person who ran a one-shot command.

The daemon retries on its own and says when (``retrying in N s``); ``bearerd token`` and
``bearerd check --acquire`` ask once and exit, so what they print must say what failed and what
fixes it — in terms of the setting to change or the thing to do in Entra — never promise a
retry that no process will make.
"""

from __future__ import annotations

from bearerd.tokens import aadsts
from bearerd.tokens.results import IdentityProviderError, SignInRequired

_SCOPES = (
    "check the route's scopes: the App ID URI of the App Proxy app + /.default (App Proxy URIs end in /, "
    "hence //.default), and that the app exists in this tenant"
)
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


def fix_for(error: IdentityProviderError, credential: str) -> str | None:
    """The fix for ``error`` of ``[credentials.<credential>]``, as one sentence — or None when the
    error already says it: an AADSTS refusal carries its meaning and fix (``aadsts.py``)."""
    if isinstance(error, SignInRequired) and "run: bearerd login" in str(error):
        return "sign in with the command above"
    if any(aadsts.explain_code(code) is not None for code in error.aadsts):
        return None
    fix = _BY_CODE.get(error.code)
    if fix is not None:
        return f"[credentials.{credential}]: {fix}"
    return f"check [credentials.{credential}] and its app registration"
