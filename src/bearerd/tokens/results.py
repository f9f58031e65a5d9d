"""What crosses the MSAL boundary: a token, or a failure described without any secret.

Every acquisition — local, through the fleet, from MSAL or a replica's record — ends in one of
these, so the provider's state machine has one vocabulary for success and failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AcquiredToken:
    value: str = field(repr=False)
    expires_in: float
    refresh_in: float | None


class IdentityProviderError(Exception):
    """A failed acquisition, described without any secret.

    ``retry_after`` is the provider's own Retry-After when it sent one. ``permanent`` marks
    answers that retrying won't fix soon (bad secret, unknown scope): they back off harder.
    ``shared`` marks another replica's failure adopted from the fleet: this replica waits it out
    without growing a backoff for attempts it never made.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retry_after: float | None = None,
        permanent: bool = False,
        shared: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
        self.permanent = permanent
        self.shared = shared


class SignInRequired(IdentityProviderError):
    """A user credential has no usable signed-in account: only `bearerd login` can fix it."""
