"""When to ask the identity provider again after a failure: one policy, for a provider and a fleet.

Two kinds of failure wait differently:

* **Trouble** (5xx, 429, timeouts, unreachable, garbage) passes by itself: retry soon, doubling
  from ``BACKOFF_BASE_S`` to ``BACKOFF_CAP_S``, with jitter.
* **Refusals the identity provider will repeat** (``invalid_grant``, ``invalid_client``, AADSTS
  50105, 65001, 700016, …): the same request gets the same answer until somebody changes
  something — a secret, a consent, an assignment, a sign-in. Asking every few seconds only burns
  the tenant's quota (a revoked refresh token was re-sent every 2 s, forever). They double from
  ``REFUSAL_BASE_S`` to ``REFUSAL_CAP_S`` (15 min). What *can* change the answer resets the wait:
  a new ``bearerd login``, a changed credential file, a reload (``provider.py``).

Every delay is jittered (uniform in the upper half of its step), so replicas that failed
together don't retry together; the provider's ``Retry-After`` is honoured when longer. A fleet
counts its refusals in Redis and shares the delay computed here (``fleet.py``), so N replicas
make the calls of one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
REFUSAL_BASE_S = 60.0
REFUSAL_CAP_S = 900.0

# OAuth error codes that answer "no" to the request itself, not "not now".
REPEATED_ERRORS = frozenset(
    {
        "invalid_grant",  # revoked/expired refresh token, consent or assignment missing
        "invalid_client",  # wrong or expired secret, unregistered certificate, stale assertion
        "unauthorized_client",  # app not found in the tenant, not allowed this grant
        "invalid_scope",
        "invalid_resource",
        "invalid_request",
        "unsupported_grant_type",
        "interaction_required",
        "consent_required",
    }
)
# AADSTS codes Entra sends with such refusals (``error_codes``), for answers whose OAuth code is
# vaguer (some arrive as ``invalid_request`` or ``access_denied``).
REPEATED_AADSTS = frozenset(
    {
        50034,  # user account does not exist in the tenant
        50053,  # account locked
        50055,  # password expired
        50057,  # user account disabled
        50076,  # MFA required (interaction)
        50079,  # MFA registration required
        50105,  # user not assigned to a role of the application
        50126,  # invalid username or password
        53003,  # blocked by Conditional Access
        65001,  # consent required
        70000,  # invalid grant (refresh token revoked, scopes)
        70011,  # invalid scope
        70043,  # refresh token expired (sign-in frequency)
        500011,  # resource principal not found in the tenant
        700016,  # application not found in the directory
        700024,  # client assertion outside its validity (a stale federated token)
        700027,  # client assertion signature / certificate not registered
        7000112,  # application disabled
        7000215,  # invalid client secret
        7000222,  # client secret expired
    }
)


def will_repeat(code: str, aadsts: Iterable[int] = ()) -> bool:
    """Whether the identity provider will give the same answer to the same request."""
    return code in REPEATED_ERRORS or any(c in REPEATED_AADSTS for c in aadsts)


def delay_s(failures: int, repeats: bool, retry_after: float | None, rng: random.Random) -> float:
    """How long to wait after the ``failures``-th consecutive failure (1 for the first)."""
    base, cap = (REFUSAL_BASE_S, REFUSAL_CAP_S) if repeats else (BACKOFF_BASE_S, BACKOFF_CAP_S)
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
