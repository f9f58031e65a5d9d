"""An OAuth error as Entra reports it (status, ``error``, AADSTS code, description), and the
refusals the emulator can be told to give.

``refusal(code)`` is Entra's answer for an AADSTS code the emulator has no state for — Conditional
Access, MFA, consent, an expired refresh token — with the ``error`` and the start of the
description Entra sends (Microsoft's "Microsoft Entra authentication and authorization error
codes"), so a test can make the token endpoint refuse exactly as a real tenant would
(``Fault(aadsts=…)``).
"""

from __future__ import annotations


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


_REFUSALS: dict[int, tuple[int, str, str]] = {
    50105: (400, "invalid_grant", "The signed in user is not assigned to a role for the application."),
    65001: (400, "invalid_grant", "The user or administrator has not consented to use the application."),
    53000: (
        400,
        "invalid_grant",
        "Device is not in required device state: compliant. Conditional Access policy "
        "requires a compliant device, and the device is not compliant.",
    ),
    53003: (400, "invalid_grant", "Access has been blocked by Conditional Access policies."),
    50076: (
        400,
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to "
        "a new location, you must use multi-factor authentication to access the resource.",
    ),
    50079: (
        400,
        "invalid_grant",
        "Due to a configuration change made by your administrator, or because you moved to "
        "a new location, you must enroll in multi-factor authentication.",
    ),
    50173: (
        400,
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    ),
    70043: (
        400,
        "invalid_grant",
        "The refresh token has expired or is invalid due to sign-in frequency checks by Conditional Access.",
    ),
    7000215: (
        401,
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is "
        "the client secret value, not the client secret ID.",
    ),
    7000222: (401, "invalid_client", "The provided client secret keys are expired."),
    700016: (400, "unauthorized_client", "Application with identifier was not found in the directory."),
    90002: (400, "invalid_tenant", "Tenant not found. Check to make sure you have the correct tenant ID."),
    700027: (
        401,
        "invalid_client",
        "The certificate with identifier used to sign the client assertion is not registered on application.",
    ),
    70011: (400, "invalid_scope", "The provided value for the input parameter 'scope' is not valid."),
    500011: (400, "invalid_resource", "The resource principal named was not found in the tenant."),
}


def refusal(code: int) -> EntraError:
    """Entra's refusal for ``code``."""
    status, error, text = _REFUSALS.get(code, (400, "invalid_request", "Injected refusal."))
    return EntraError(status, error, code, f"AADSTS{code}: {text}")
