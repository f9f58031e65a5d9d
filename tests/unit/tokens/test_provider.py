"""``TokenProvider``'s state machine under a fake clock: single flight, early refresh, backoff.

The source is a scripted stand-in for bearerd's own ``TokenSource`` interface; time moves only
through ``FakeClock.advance``, so every timing rule is checked exactly, on any machine.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from bearerd.errors import LoginRequired, TokenUnavailable
from bearerd.tokens import backoff
from bearerd.tokens import provider as provider_module
from bearerd.tokens.provider import TokenProvider
from bearerd.tokens.results import AcquiredToken, IdentityProviderError, SignInRequired
from bearerd.tokens.sources import Origin
from support.clock import FakeClock
from support.fakes import ScriptedSource


def make(source: ScriptedSource, clock: FakeClock, seed: int = 7) -> TokenProvider:
    return TokenProvider(
        source, "cred", ("api://x/.default",), clock=clock, call_later=clock.call_later, rng=random.Random(seed)
    )


def server_error(retry_after: float | None = None) -> IdentityProviderError:
    return IdentityProviderError("identity provider failed", code="server_error", retry_after=retry_after)


async def unavailable(provider: TokenProvider) -> TokenUnavailable:
    with pytest.raises(TokenUnavailable) as info:
        await provider.fetch()
    return info.value


async def test_a_thousand_callers_share_one_acquisition_then_read_memory() -> None:
    clock, source = FakeClock(), ScriptedSource(gate=asyncio.Event())
    provider = make(source, clock)
    waiting = [asyncio.ensure_future(provider.fetch()) for _ in range(1000)]
    await clock.settle()
    assert len(source.calls) == 1
    assert source.gate is not None
    source.gate.set()
    assert set(await asyncio.gather(*waiting)) == {"token-1"}
    for _ in range(100):
        assert provider.current() == "token-1"
    assert len(source.calls) == 1


async def test_refresh_starts_at_half_life_and_the_old_token_is_served_meanwhile() -> None:
    clock, source = FakeClock(), ScriptedSource(lifetime_s=100)
    provider = make(source, clock)
    assert await provider.fetch() == "token-1"
    assert clock.pending() == [50.0]
    await clock.advance(49.9)
    assert len(source.calls) == 1
    source.gate = asyncio.Event()
    await clock.advance(0.1)
    assert len(source.calls) == 2  # the timer started the refresh...
    assert provider.current() == "token-1"  # ...and the current token is still served
    source.gate.set()
    await clock.settle()
    assert provider.current() == "token-2"


async def test_the_identity_providers_refresh_in_wins_over_half_life() -> None:
    clock, source = FakeClock(), ScriptedSource(lifetime_s=3600, refresh_in_s=600)
    provider = make(source, clock)
    await provider.fetch()
    assert clock.pending() == [600.0]


async def test_a_token_is_never_used_in_its_last_tenth_of_life_or_last_minute() -> None:
    clock = FakeClock()
    provider = make(ScriptedSource(lifetime_s=100), clock)
    await provider.fetch()
    clock.now += 89.9
    assert provider.current() == "token-1"
    clock.now += 0.2
    assert provider.current() is None  # 100 s lifetime: unusable 10 s (a tenth) before expiry
    clock2 = FakeClock()
    long_lived = make(ScriptedSource(lifetime_s=3600), clock2)
    await long_lived.fetch()
    clock2.now += 3600 - 60.1
    assert long_lived.current() == "token-1"
    clock2.now += 0.2
    assert long_lived.current() is None  # capped at a minute


async def test_failures_back_off_exponentially_with_jitter_to_the_cap() -> None:
    clock, source = FakeClock(), ScriptedSource()
    source.fail(*[server_error() for _ in range(9)])
    provider = make(source, clock)
    for attempt in range(1, 10):
        error = await unavailable(provider)
        assert len(source.calls) == attempt
        ceiling = min(backoff.BACKOFF_CAP_S, backoff.BACKOFF_BASE_S * 2 ** (attempt - 1))
        assert error.retry_after is not None
        assert max(1.0, ceiling / 2) <= error.retry_after <= max(1.0, ceiling) + 1e-9
        # Asking again while backing off never reaches the identity provider.
        await unavailable(provider)
        assert len(source.calls) == attempt
        await clock.advance(error.retry_after)
    assert await provider.fetch() == "token-1"


async def test_retry_after_from_the_identity_provider_is_honoured() -> None:
    clock, source = FakeClock(), ScriptedSource()
    source.fail(server_error(retry_after=120))
    provider = make(source, clock)
    error = await unavailable(provider)
    assert error.retry_after == 120
    await clock.advance(119)
    await unavailable(provider)
    assert len(source.calls) == 1
    await clock.advance(1)
    assert await provider.fetch() == "token-1"


def refusal(code: str = "invalid_client") -> IdentityProviderError:
    return IdentityProviderError(f"identity provider refused: {code}", code=code, permanent=True)


class TimedSource(ScriptedSource):
    """A scripted source that notes when (fake time) each acquisition was made."""

    def __init__(self, clock: FakeClock, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.clock = clock
        self.at: list[float] = []

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        self.at.append(self.clock.now)
        return await super().acquire(claims, avoid)


async def test_a_repeated_refusal_backs_off_exponentially_to_fifteen_minutes() -> None:
    """Issue 16: a revoked refresh token was re-sent every 2 s, forever. Callers keep coming every
    5 s for six hours of fake time; the identity provider is asked on the backoff's schedule only."""
    clock = FakeClock()
    source = TimedSource(clock)
    source.fail(*[refusal("invalid_grant") for _ in range(10_000)])
    provider = make(source, clock)
    hours = 6
    for _ in range(hours * 3600 // 5):
        with pytest.raises(TokenUnavailable):
            await provider.fetch()
        await clock.advance(5)
    gaps = [b - a for a, b in zip(source.at, source.at[1:], strict=False)]
    for step, gap in enumerate(gaps, start=1):
        ceiling = min(backoff.REFUSAL_CAP_S, backoff.REFUSAL_BASE_S * 2 ** (step - 1))
        assert ceiling / 2 - 1e-6 <= gap <= ceiling + 1e-6, (step, gap)  # jittered, never sooner
    assert max(gaps) <= backoff.REFUSAL_CAP_S + 1e-6
    # 6 h at one call per 7.5-15 min once capped: a few dozen calls, where every 2 s made 10,800.
    assert len(source.at) <= 6 + hours * 3600 / (backoff.REFUSAL_CAP_S / 2)
    assert len(source.at) >= hours * 3600 / backoff.REFUSAL_CAP_S


async def test_trouble_backs_off_to_a_minute_not_to_a_refusals_cap() -> None:
    clock = FakeClock()
    source = TimedSource(clock)
    source.fail(*[server_error() for _ in range(100)])
    provider = make(source, clock)
    for _ in range(3600 // 5):
        with pytest.raises(TokenUnavailable):
            await provider.fetch()
        await clock.advance(5)
    gaps = [b - a for a, b in zip(source.at, source.at[1:], strict=False)]
    assert max(gaps) <= backoff.BACKOFF_CAP_S + 5  # a request every 5 s starts the attempt once due


async def test_a_new_sign_in_ends_a_refused_sign_ins_wait_without_any_request() -> None:
    clock, source = FakeClock(), ScriptedSource()
    revoked = SignInRequired("the user must sign in again (invalid_grant)", code="login_required", permanent=True)
    source.fail(revoked)
    provider = make(source, clock)
    error = await unavailable(provider)
    assert isinstance(error, LoginRequired)
    assert error.retry_after is not None and error.retry_after >= backoff.REFUSAL_BASE_S / 2
    await clock.advance(provider_module.CREDENTIAL_RECHECK_S * 5)
    assert len(source.calls) == 1  # the cache file was looked at, nobody was asked
    source.files += 1  # `bearerd login` rewrote the cache file
    await clock.advance(provider_module.CREDENTIAL_RECHECK_S)
    assert len(source.calls) == 2 and provider.current() == "token-1"


async def test_a_changed_credential_file_ends_the_wait_for_the_next_request() -> None:
    clock, source = FakeClock(), ScriptedSource()
    source.fail(refusal("invalid_client"))
    provider = make(source, clock)
    await unavailable(provider)
    await unavailable(provider)
    assert len(source.calls) == 1
    source.files += 1  # a replaced secret file, a rotated federated token
    assert await provider.fetch() == "token-1"
    assert len(source.calls) == 2


async def test_a_reload_lifts_a_refusals_wait_and_the_fleets_but_not_a_retry_after() -> None:
    clock, source = FakeClock(), ScriptedSource()
    source.fail(refusal("invalid_client"), server_error(retry_after=120))
    provider = make(source, clock)
    await unavailable(provider)
    provider.reset_backoff("reload")
    error = await unavailable(provider)  # asked again at once (and refused, with a Retry-After)
    assert len(source.calls) == 2 and source.forgotten == 1  # the fleet's shared wait was lifted first
    assert error.retry_after == 120
    provider.reset_backoff("reload")
    await unavailable(provider)
    assert len(source.calls) == 2  # throttling is not a refusal: its Retry-After still holds
    await clock.advance(120)
    assert await provider.fetch() == "token-1"


async def test_a_shared_refusal_lifted_elsewhere_in_the_fleet_ends_the_wait() -> None:
    clock, source = FakeClock(), ScriptedSource()
    shared = SignInRequired("the user must sign in again", code="login_required", permanent=True)
    source.fail(shared.as_shared(600.0, streak=1))
    provider = make(source, clock)
    await unavailable(provider)
    await clock.advance(provider_module.CREDENTIAL_RECHECK_S * 3)
    assert len(source.calls) == 1  # the fleet's wait still stands
    source.lifted = True  # `bearerd login` on another replica removed the fleet's shared refusal
    await clock.advance(provider_module.CREDENTIAL_RECHECK_S)
    assert len(source.calls) == 2 and provider.current() == "token-1"
    assert source.forgotten == 0  # nothing left to lift


async def test_the_fleets_wait_and_count_are_taken_as_they_are() -> None:
    clock = FakeClock()
    source = TimedSource(clock)
    shared = IdentityProviderError("refused", code="invalid_client", permanent=True, shared=True)
    source.fail(shared.as_shared(100.0, streak=3), refusal())
    provider = make(source, clock)
    first = await unavailable(provider)
    assert first.retry_after == 100  # the fleet's wait, not a backoff of our own
    await clock.advance(100)
    second = await unavailable(provider)
    # Our next failure is the fleet's 4th: its wait grows from there (60 s · 2³ = 480 s step).
    assert second.retry_after is not None and 240 <= second.retry_after <= 480
    assert len(source.at) == 2 and source.at[1] - source.at[0] == 100


async def test_a_valid_token_is_served_through_an_outage_and_retried_by_timer() -> None:
    clock, source = FakeClock(), ScriptedSource(lifetime_s=100)
    provider = make(source, clock)
    await provider.fetch()
    source.fail(*[server_error() for _ in range(20)])
    await clock.advance(50)  # refresh due: fails
    assert len(source.calls) == 2
    assert provider.current() == "token-1"
    await clock.advance(39)  # backoff timers keep retrying while the token is still usable
    retries = len(source.calls)
    assert retries > 3
    assert provider.current() == "token-1"
    assert provider.status().last_error is not None and provider.status().has_token
    await clock.advance(1.1)  # past usable_until (90 s)
    assert provider.current() is None
    assert not provider.status().has_token


async def test_a_refused_token_forces_a_new_one_at_most_every_ten_seconds() -> None:
    clock, source = FakeClock(), ScriptedSource()
    provider = make(source, clock)
    first = await provider.fetch()
    assert await provider.refresh_rejected(first) == "token-2"
    assert source.calls[-1].avoid == first  # a shared copy of the refused token won't do
    assert await provider.refresh_rejected("token-2") is None  # within 10 s: no new call
    assert len(source.calls) == 2
    await clock.advance(provider_module.FORCED_REFRESH_MIN_INTERVAL_S)
    assert await provider.refresh_rejected("token-2") == "token-3"


async def test_a_caller_holding_an_already_replaced_token_gets_the_new_one_without_a_call() -> None:
    clock, source = FakeClock(), ScriptedSource()
    provider = make(source, clock)
    first = await provider.fetch()
    assert await provider.refresh_rejected(first) == "token-2"
    assert await provider.refresh_rejected(first) == "token-2"
    assert len(source.calls) == 2


async def test_claims_challenges_share_one_acquisition_per_challenge() -> None:
    clock, source = FakeClock(), ScriptedSource()
    provider = make(source, clock)
    first = await provider.fetch()
    source.gate = asyncio.Event()
    claims = '{"access_token":{"acrs":{"value":"c1"}}}'
    waiting = [asyncio.ensure_future(provider.refresh_with_claims(first, claims)) for _ in range(5)]
    await clock.settle()
    source.gate.set()
    answers = await asyncio.gather(*waiting)
    assert len(source.calls) == 2 and source.calls[-1].claims == claims
    assert len(set(answers)) == 1 and answers[0] is not None and answers[0].endswith(claims)
    assert provider.current() == answers[0]  # it satisfies everything the old one did, and more


async def test_a_user_credential_without_sign_in_says_login_and_looks_again_soon() -> None:
    clock, source = FakeClock(), ScriptedSource()
    source.fail(SignInRequired("no signed-in user; run: bearerd login alice", code="login_required", retry_after=2))
    provider = make(source, clock)
    error = await unavailable(provider)
    assert isinstance(error, LoginRequired) and error.slug == "login-required"
    assert "bearerd login alice" in error.detail
    assert clock.pending() == [2.0]  # a local look at the cache file, not a call to Entra
    await clock.advance(2)
    assert provider.current() == "token-1"


async def test_a_surprise_from_the_source_is_a_failure_like_any_other() -> None:
    class Exploding(ScriptedSource):
        async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
            raise KeyError("msal internals")

    clock = FakeClock()
    provider = make(Exploding(), clock)
    error = await unavailable(provider)
    assert "unexpectedly (KeyError)" in error.detail and "msal internals" not in error.detail


async def test_close_stops_timers() -> None:
    clock, source = FakeClock(), ScriptedSource(lifetime_s=100)
    provider = make(source, clock)
    await provider.fetch()
    await provider.close()
    await clock.advance(1000)
    assert len(source.calls) == 1
