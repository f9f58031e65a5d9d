"""``TokenProvider``: one in-memory access token per (credential, scopes), kept fresh.

The hot path is ``current()``: a synchronous read of an attribute and one clock comparison —
no await, no lock, no thread hop, no MSAL call. Everything slow happens off that path:

* **Single flight.** At most one acquisition task runs per provider; every caller that needs a
  token awaits that same task (MSAL has no single flight of its own), so 1,000 simultaneous first
  requests make one call to the identity provider.
* **Early refresh.** A timer starts the next acquisition at MSAL's ``refresh_in`` or half the
  lifetime, while the current token keeps being served; a request that sees the refresh time
  passed (timer late, or refresh failing) nudges it too.
* **Backoff.** A failure waits ``min(cap, base·2ⁿ)`` with jitter — or the provider's
  ``Retry-After`` when longer — before the next attempt (``backoff.py``: seconds to a minute for
  trouble, up to 15 minutes for refusals the identity provider will repeat). While waiting, a
  still-valid token is served; without one, callers get ``TokenUnavailable`` at once (503 +
  Retry-After) instead of each of them hammering the identity provider.
* **What resets a refusal's wait.** A refusal's answer changes only when something changes, so
  those things end the wait at once: the credential's files (a new ``bearerd login`` rewrites the
  user's cache; a rotated federated token, a replaced secret or key), looked at every
  ``CREDENTIAL_RECHECK_S`` with a ``stat`` and no network call, and a reload
  (``reset_backoff``). In a fleet the first attempt after a reset also lifts the fleet's shared
  wait (``TokenSource.forget_failures``), and a replica waiting out a shared refusal looks at the
  same interval whether another replica lifted it (a login or a reload elsewhere).

* **Sources.** How a new token is obtained is the ``TokenSource``'s business (``sources.py``):
  MSAL in a worker thread, or the Redis fleet first (``fleet.py``). The provider only decides when.

Time comes from an injectable clock and timer (``clock``, ``call_later``), so the whole state
machine runs under a fake clock in the unit tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from bearerd.errors import LoginRequired, TokenUnavailable
from bearerd.tokens import backoff
from bearerd.tokens.results import AcquiredToken, IdentityProviderError, SignInRequired
from bearerd.tokens.sources import Origin, TokenSource

Clock = Callable[[], float]


class Timer(Protocol):
    def cancel(self) -> None: ...


# ``loop.call_later`` by default; a fake clock's in the unit tests.
CallLater = Callable[[float, Callable[[], None]], Timer]

log = structlog.get_logger("bearerd.tokens")

# While a refusal's wait runs, how often the credential's files are looked at for a change.
CREDENTIAL_RECHECK_S = 2.0
# Stop using a token a little before it expires, so it doesn't expire on its way upstream.
EXPIRY_MARGIN_MAX_S = 60.0
# A refused token forces a new one at most this often, so an upstream that answers 401 for
# reasons of its own cannot turn every request into a call to the identity provider.
FORCED_REFRESH_MIN_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    refresh_at: float  # monotonic: start getting the next one
    usable_until: float  # monotonic: never send it after this
    expires_on: float  # wall clock, for humans and metrics


@dataclass(slots=True)
class ProviderStatus:
    """What /readyz and `bearerd check` show about a provider (never the token)."""

    has_token: bool
    expires_in_s: float | None
    last_error: str | None
    retry_in_s: float | None


class TokenProvider:
    def __init__(
        self,
        source: TokenSource,
        credential: str,
        scopes: tuple[str, ...],
        *,
        close_timeout_s: float = 30.0,
        clock: Clock = time.monotonic,
        call_later: CallLater | None = None,
        wall_clock: Clock = time.time,
        rng: random.Random | None = None,
        on_attempt: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.source = source
        self.credential = credential
        self._avoid: str | None = None  # a token the upstream refused: a shared copy of it won't do
        self._on_attempt = on_attempt  # (credential, outcome, seconds), for metrics
        self.scopes = scopes
        self._close_timeout_s = close_timeout_s
        self._clock = clock
        self._call_later = call_later
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._token: Token | None = None
        self._inflight: asyncio.Task[Token] | None = None
        self._claims_inflight: dict[str, asyncio.Task[Token]] = {}
        self._timer: Timer | None = None
        self._failures = 0
        self._next_attempt_at = 0.0
        self._last_error: IdentityProviderError | None = None
        self._refused_stamp: object = None  # the credential's files when a refusal came; None: no refusal
        self._forget_shared = False  # the next attempt first lifts the fleet's shared wait
        self._lift_check: asyncio.Task[bool] | None = None  # is the fleet's shared wait still there?
        self._last_forced = -FORCED_REFRESH_MIN_INTERVAL_S
        self._closed = False
        self.acquisitions = 0  # attempts made (for tests, logs and metrics)

    # -- hot path -----------------------------------------------------------------------------

    def current(self) -> str | None:
        """The token to send now, or None when the caller must ``await fetch()``."""
        token = self._token
        if token is None:
            return None
        now = self._clock()
        if now < token.refresh_at:
            return token.value
        if now < token.usable_until:
            self._refresh_in_background(now)
            return token.value
        return None

    # -- slow path ----------------------------------------------------------------------------

    async def fetch(self) -> str:
        """Wait for a usable token; raise ``TokenUnavailable`` (with retry_after) when there is none."""
        value = self.current()
        if value is not None:
            return value
        now = self._clock()
        if self._inflight is None and now < self._next_attempt_at and not self._credential_changed():
            raise self._unavailable(self._next_attempt_at - now)
        task = self._start_acquisition()
        try:
            token = await asyncio.shield(task)
        except IdentityProviderError:
            raise self._unavailable(max(0.0, self._next_attempt_at - self._clock())) from None
        return token.value

    def reject(self, rejected: str) -> bool:
        """The upstream refused ``rejected``: drop it and start getting another.

        Returns whether a new token is (or already was) on its way. Only the first caller holding
        the refused token forces an acquisition; forcing is rate-limited
        (``FORCED_REFRESH_MIN_INTERVAL_S``) so an upstream that answers 401 for reasons of its own
        can't turn every request into a call to the identity provider.
        """
        if self._inflight is not None:
            return True
        token = self._token
        now = self._clock()
        if token is not None and token.value != rejected and now < token.usable_until:
            return True
        if now - self._last_forced < FORCED_REFRESH_MIN_INTERVAL_S or now < self._next_attempt_at or self._closed:
            return False
        self._last_forced = now
        if token is not None and token.value == rejected:
            self._token = None
        self._avoid = rejected
        self._start_acquisition()
        return True

    async def refresh_rejected(self, rejected: str) -> str | None:
        """A token other than ``rejected`` to retry with, or None when none is coming."""
        if not self.reject(rejected):
            return None
        token = self._token
        if self._inflight is None and token is not None and token.value != rejected:
            return token.value
        task = self._inflight
        if task is None:
            return None
        try:
            new = await asyncio.shield(task)
        except IdentityProviderError:
            raise self._unavailable(max(0.0, self._next_attempt_at - self._clock())) from None
        return new.value if new.value != rejected else None

    def warm_up(self) -> None:
        """Start getting the first token in the background (failures are logged and backed off)."""
        if self._token is None:
            self._refresh_in_background(self._clock())

    async def refresh_with_claims(self, rejected: str, claims: str) -> str | None:
        """Continuous access evaluation: the upstream wants a token satisfying ``claims``.

        One acquisition per distinct challenge at a time; the result becomes the current token
        (it satisfies everything the old one did, and more). None when none could be had.
        """
        token = self._token
        if token is not None and token.value != rejected and self._clock() < token.usable_until:
            return token.value  # someone already answered this challenge
        task = self._claims_inflight.get(claims)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._acquire(claims), name=f"claims:{self.credential}")
            self._claims_inflight[claims] = task
            task.add_done_callback(lambda t: self._claims_done(claims, t))
        try:
            new = await asyncio.shield(task)
        except IdentityProviderError:
            return None
        return new.value

    def _claims_done(self, claims: str, task: asyncio.Task[Token]) -> None:
        self._claims_inflight.pop(claims, None)
        if not task.cancelled():
            task.exception()

    @property
    def acquiring(self) -> bool:
        """Whether an acquisition is under way (for status and tests)."""
        return self._inflight is not None

    @property
    def last_error(self) -> IdentityProviderError | None:
        """Why the last acquisition failed (None after a success): for one-shot commands."""
        return self._last_error

    def reset_backoff(self, reason: str) -> None:
        """Something that can change a refusal's answer happened (a reload, a changed credential
        file): the next attempt may start now. Waits for trouble (5xx, 429's Retry-After) stay."""
        error = self._last_error
        if error is None or not error.permanent:
            return
        self._failures = 0
        self._next_attempt_at = 0.0
        self._refused_stamp = None
        self.lift_shared_failures()
        log.info("token.backoff_reset", credential=self.credential, scopes=list(self.scopes), reason=reason)

    def lift_shared_failures(self) -> None:
        """The next attempt first lifts failures shared by a fleet (a credential new in a reload)."""
        self._forget_shared = True

    def status(self) -> ProviderStatus:
        now = self._clock()
        token = self._token
        usable = token is not None and now < token.usable_until
        return ProviderStatus(
            has_token=usable,
            expires_in_s=(token.expires_on - self._wall_clock()) if token is not None and usable else None,
            last_error=str(self._last_error) if self._last_error is not None else None,
            retry_in_s=max(0.0, self._next_attempt_at - now) if self._last_error is not None else None,
        )

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lift_check is not None:
            self._lift_check.cancel()
        tasks = {t for t in (self._inflight, *self._claims_inflight.values(), self._lift_check) if t is not None}
        if tasks:
            # The worker thread can't be interrupted; waiting for it keeps shutdown orderly.
            await asyncio.wait(tasks, timeout=self._close_timeout_s)

    # -- internals ----------------------------------------------------------------------------

    def _unavailable(self, retry_in: float) -> TokenUnavailable:
        if isinstance(self._last_error, SignInRequired):
            return LoginRequired(
                f"credential {self.credential!r} needs a signed-in user: {self._last_error}",
                retry_after=max(1.0, retry_in),
            )
        reason = str(self._last_error) if self._last_error is not None else "no token yet"
        return TokenUnavailable(
            f"no access token for credential {self.credential!r}: {reason}; retrying in {retry_in:.0f} s",
            retry_after=max(1.0, retry_in),
        )

    def _credential_changed(self) -> bool:
        """Whether the credential's files changed since a refusal (then its wait is over)."""
        if self._refused_stamp is None or self.source.stamp() == self._refused_stamp:
            return False
        self.reset_backoff("credential files changed")
        return True

    def _refresh_in_background(self, now: float) -> None:
        # No look at the credential's files here: this runs on the hot path (``current()``); the
        # recheck timer and ``fetch()`` without a token do that.
        if self._inflight is None and now >= self._next_attempt_at and not self._closed:
            self._start_acquisition()

    def _start_acquisition(self) -> asyncio.Task[Token]:
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._acquire(), name=f"token:{self.credential}")
            self._inflight = task
            task.add_done_callback(self._acquisition_done)
        return task

    def _acquisition_done(self, task: asyncio.Task[Token]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved: background refresh failures are logged in _acquire

    async def _acquire(self, claims: str | None = None) -> Token:
        started = self._clock()
        self.acquisitions += 1
        avoid, self._avoid = self._avoid, None
        forget, self._forget_shared = self._forget_shared, False
        try:
            if forget:
                await self.source.forget_failures()
            acquired, origin = await self.source.acquire(claims, avoid)
        except IdentityProviderError as exc:
            self._report(exc.code, started)
            self._on_failure(exc, started)
            raise
        except Exception as exc:
            # Never let a surprise from MSAL take down a request or the loop: it is a failure like any.
            error = IdentityProviderError(f"token acquisition failed unexpectedly ({type(exc).__name__})", code="bug")
            log.error("token.acquire_crashed", credential=self.credential, error_type=type(exc).__name__)
            self._report("bug", started)
            self._on_failure(error, started)
            raise error from exc
        self._report("shared" if origin == "shared" else "success", started)
        return self._on_success(acquired, started, origin)

    def _report(self, outcome: str, started: float) -> None:
        if self._on_attempt is not None:
            self._on_attempt(self.credential, outcome, self._clock() - started)

    def _on_success(self, acquired: AcquiredToken, started: float, origin: Origin) -> Token:
        now = self._clock()
        lifetime = max(0.0, acquired.expires_in)
        margin = min(EXPIRY_MARGIN_MAX_S, lifetime / 10)
        refresh_in = acquired.refresh_in if acquired.refresh_in is not None else lifetime / 2
        refresh_in = min(max(0.0, refresh_in), lifetime - margin)
        token = Token(
            value=acquired.value,
            refresh_at=now + refresh_in,
            usable_until=now + lifetime - margin,
            expires_on=self._wall_clock() + lifetime,
        )
        self._token = token
        self._failures = 0
        self._next_attempt_at = 0.0
        self._last_error = None
        self._refused_stamp = None
        log.info(
            "token.acquired",
            credential=self.credential,
            scopes=list(self.scopes),
            expires_in_s=round(lifetime),
            refresh_in_s=round(refresh_in),
            duration_ms=round((now - started) * 1000, 1),
            source=origin,
        )
        self._schedule(token.refresh_at)
        return token

    def _on_failure(self, error: IdentityProviderError, started: float) -> None:
        now = self._clock()
        if error.shared and error.retry_after is not None:
            # The fleet's wait (another replica's failure adopted, or ours shared): as it says, and
            # its count of failures becomes ours, so the next step grows from where the fleet is.
            delay = error.retry_after
            self._failures = max(self._failures, error.streak)
        else:
            self._failures += 1
            delay = backoff.delay_s(self._failures, error.permanent, error.retry_after, self._rng)
        if isinstance(error, SignInRequired) and not error.permanent:
            # No signed-in account: nobody was asked; a local look at the cache file is cheap and
            # notices a login quickly.
            delay = error.retry_after or delay
        repeated = self._last_error is not None and self._last_error.code == error.code
        self._next_attempt_at = now + delay
        self._last_error = error
        # What the credential's files were when refused: a change ends the wait (a new login...).
        self._refused_stamp = self.source.stamp() if error.permanent else None
        token = self._token
        still_valid = token is not None and now < token.usable_until
        # Waiting for a sign-in is one state, not an error per attempt: say it once.
        level = log.debug if repeated and isinstance(error, SignInRequired) else log.warning
        level(
            "token.acquire_failed",
            credential=self.credential,
            scopes=list(self.scopes),
            error=str(error),
            code=error.code,
            retry_in_s=round(delay, 1),
            failures=self._failures,
            serving_valid_token=still_valid,
            duration_ms=round((now - started) * 1000, 1),
        )
        if error.permanent:
            self._schedule(min(self._next_attempt_at, now + CREDENTIAL_RECHECK_S))
        elif still_valid or isinstance(error, SignInRequired):
            self._schedule(self._next_attempt_at)

    def _check_shared_wait(self, now: float) -> None:
        """Waiting out a refusal the fleet shared: ask it (one Redis read) whether another replica
        lifted it — a `bearerd login` or a reload there — and if so, ask again now."""
        error = self._last_error
        if error is None or not (error.permanent and error.shared):
            return
        if now >= self._next_attempt_at - CREDENTIAL_RECHECK_S:
            return  # its end is near: the key expiring then is no news
        if self._lift_check is not None:
            return
        task = asyncio.get_running_loop().create_task(self.source.failure_lifted(), name=f"lifted:{self.credential}")
        self._lift_check = task
        task.add_done_callback(self._shared_wait_checked)

    def _shared_wait_checked(self, task: asyncio.Task[bool]) -> None:
        self._lift_check = None
        if task.cancelled() or task.exception() is not None or not task.result() or self._closed:
            return
        if self._last_error is not None and self._last_error.permanent:
            self.reset_backoff("lifted by the fleet")
            self._forget_shared = False  # already gone
            self._refresh_in_background(self._clock())

    def _schedule(self, at: float) -> None:
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(max(0.0, at - self._clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._clock()
        if self._inflight is None and not self._closed and not self._credential_changed():
            self._check_shared_wait(now)
        self._refresh_in_background(now)
        error = self._last_error
        if self._inflight is None and error is not None and error.permanent:
            # Still refused and nothing changed: look at the credential's files again later.
            self._schedule(min(max(self._next_attempt_at, now), now + CREDENTIAL_RECHECK_S))
