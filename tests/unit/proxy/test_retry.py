"""The one retry flow (``send_with_token``): claims challenges, refused tokens, persisting refusals.

The attempts are plain values, the provider a real ``TokenProvider`` over a scripted source under a
fake clock: what is checked is the decision — how often it sends, with which token, and what it
answers with — not any transport.
"""

from __future__ import annotations

import base64
import json
import random

import pytest

from bearerd.errors import TokenRejected
from bearerd.proxy.retry import Answer, claims_challenge, refusal, send_with_token, sign_in_hosts
from bearerd.tokens.provider import TokenProvider
from support.clock import FakeClock
from support.fakes import ScriptedSource

HOSTS = sign_in_hosts("https://127.0.0.1:4443/tenant")
SIGN_IN = Answer(302, "https://login.microsoftonline.com/t/oauth2/authorize?x=1")
OK = Answer(200)
CLAIMS = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
CHALLENGE = Answer(
    401,
    www_authenticate=(
        'Bearer realm="", error="insufficient_claims", claims="' + base64.b64encode(CLAIMS.encode()).decode() + '"',
    ),
)


class Upstream:
    """Answers in order; records the token each attempt carried and which attempts were released."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.sent: list[str | None] = []
        self.released: list[int] = []

    async def send(self, token: str | None) -> int:
        self.sent.append(token)
        return len(self.sent) - 1

    def answer(self, attempt: int) -> Answer:
        return self.answers[min(attempt, len(self.answers) - 1)]

    def discard(self, attempt: int) -> None:
        self.released.append(attempt)


async def provider_with_token() -> tuple[TokenProvider, str, ScriptedSource]:
    clock, source = FakeClock(), ScriptedSource()
    provider = TokenProvider(source, "c", ("s",), clock=clock, call_later=clock.call_later, rng=random.Random(1))
    return provider, await provider.fetch(), source


async def run(
    upstream: Upstream, provider: TokenProvider, token: str | None, replayable: bool = True
) -> tuple[int, str | None]:
    return await send_with_token(
        upstream.send,
        upstream.answer,
        upstream.discard,
        token=token,
        provider=provider,
        hosts=HOSTS,
        replayable=replayable,
    )


async def test_an_accepted_token_is_sent_once() -> None:
    provider, token, source = await provider_with_token()
    upstream = Upstream(OK)
    assert await run(upstream, provider, token) == (0, None)
    assert upstream.sent == [token] and len(source.calls) == 1


async def test_a_sign_in_redirect_gets_one_retry_with_a_new_token() -> None:
    provider, token, _ = await provider_with_token()
    upstream = Upstream(SIGN_IN, OK)
    assert await run(upstream, provider, token) == (1, "refused")
    assert upstream.sent == [token, "token-2"] and upstream.released == [0]


async def test_a_persisting_sign_in_redirect_is_token_rejected_never_a_login_page() -> None:
    provider, token, _ = await provider_with_token()
    upstream = Upstream(SIGN_IN, SIGN_IN)
    with pytest.raises(TokenRejected, match="set app_id = "):
        await run(upstream, provider, token)
    assert len(upstream.sent) == 2 and upstream.released == [0, 1]


async def test_a_persisting_401_is_passed_through_after_one_retry() -> None:
    provider, token, _ = await provider_with_token()
    upstream = Upstream(Answer(401), Answer(401))
    assert await run(upstream, provider, token) == (1, "refused")
    assert len(upstream.sent) == 2


async def test_a_streamed_body_is_not_resent_but_the_next_request_gets_a_new_token() -> None:
    provider, token, source = await provider_with_token()
    upstream = Upstream(SIGN_IN)
    with pytest.raises(TokenRejected, match="could not be replayed"):
        await run(upstream, provider, token, replayable=False)
    assert upstream.sent == [token]
    assert await provider.fetch() == "token-2" and len(source.calls) == 2


async def test_a_claims_challenge_gets_one_token_with_those_claims_and_one_retry() -> None:
    provider, token, source = await provider_with_token()
    upstream = Upstream(CHALLENGE, OK)
    assert await run(upstream, provider, token) == (1, "claims")
    assert source.calls[-1].claims == CLAIMS
    assert upstream.sent[1] is not None and upstream.sent[1].endswith(CLAIMS)


async def test_a_claims_challenge_that_cant_be_replayed_is_answered_as_it_came() -> None:
    provider, token, source = await provider_with_token()
    upstream = Upstream(CHALLENGE)
    assert await run(upstream, provider, token, replayable=False) == (0, None)
    assert len(source.calls) == 1


async def test_without_a_token_of_ours_nothing_is_retried() -> None:
    provider, _, source = await provider_with_token()
    upstream = Upstream(SIGN_IN)
    assert await run(upstream, provider, None) == (0, None)
    assert len(source.calls) == 1


def test_refusals_are_recognised_only_for_sign_in_hosts() -> None:
    assert refusal(SIGN_IN, HOSTS) == "sign-in"
    assert refusal(Answer(302, "https://127.0.0.1:4443/tenant/oauth2/authorize"), HOSTS) == "sign-in"  # the authority
    assert refusal(Answer(302, "https://app.example/next"), HOSTS) is None  # the backend's own redirect
    assert refusal(Answer(302, "/relative"), HOSTS) is None
    assert refusal(Answer(401), HOSTS) == "401"
    assert refusal(Answer(403), HOSTS) is None


def test_claims_challenge_parsing() -> None:
    assert claims_challenge(CHALLENGE) == CLAIMS
    assert claims_challenge(Answer(401, www_authenticate=('Bearer error="invalid_token"',))) is None
    assert claims_challenge(Answer(403, www_authenticate=CHALLENGE.www_authenticate)) is None
    assert claims_challenge(Answer(401, www_authenticate=('Bearer error="insufficient_claims", claims="%%%"',))) is None
