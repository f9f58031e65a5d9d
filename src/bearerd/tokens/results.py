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
    refusals the identity provider will repeat until something changes (bad secret, revoked
    sign-in, missing consent; ``backoff.will_repeat``): they back off to a cap of minutes.
    ``aadsts`` are Entra's ``error_codes``. ``shared`` marks a wait the fleet decided (another
    replica's failure adopted, or this one's shared): this replica waits ``retry_after`` as it is,
    and takes ``streak`` — the fleet's count of consecutive failures — as its own.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retry_after: float | None = None,
        permanent: bool = False,
        shared: bool = False,
        aadsts: tuple[int, ...] = (),
        streak: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
        self.permanent = permanent
        self.shared = shared
        self.aadsts = aadsts
        self.streak = streak

    def as_shared(self, wait_s: float, streak: int) -> IdentityProviderError:
        """The same failure with the fleet's wait and count (same class: a sign-in stays a sign-in)."""
        return type(self)(
            str(self),
            code=self.code,
            retry_after=wait_s,
            permanent=self.permanent,
            shared=True,
            aadsts=self.aadsts,
            streak=streak,
        )


class SignInRequired(IdentityProviderError):
    """A user credential has no usable signed-in account: only `bearerd login` can fix it."""
