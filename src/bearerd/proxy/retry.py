"""The one "send, and on a refused token send once more with a new one" flow.

Every request that carries a token goes through this flow — ``send_with_token`` for WebSocket
handshakes, its second half ``answer_refusal`` for plain HTTP, which makes the first attempt
itself — so refusals are recognised, retried and reported the same way everywhere:

* **Claims challenge** (continuous access evaluation: 401 + ``error="insufficient_claims"``):
  one token request carrying the claims, one retry. Without such a token the client gets the
  upstream's 401 and its challenge as they are.
* **Refused token** (App Proxy's 302 to a sign-in host, or a 401): a new token (rate-limited in
  the provider), one retry. A sign-in redirect that persists becomes ``TokenRejected`` (502)
  instead of a login page; a persisting 401 is passed through.
* A streamed body can't be sent twice: the token is dropped so the *next* request gets a new
  one, and this one is answered with the refusal.

The flow never follows a redirect, so a token only ever goes to its route's upstream.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from bearerd.config.addresses import origin_key
from bearerd.errors import TokenRejected
from bearerd.proxy.exchange import RetryKind
from bearerd.tokens.provider import TokenProvider

# App Proxy sends a refused caller to one of these sign-in hosts (public and sovereign clouds).
KNOWN_SIGN_IN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.microsoftonline.de",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.windows.net",
        "login.microsoft.com",
    }
)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')

Refusal = Literal["sign-in", "401"]
A = TypeVar("A")


def sign_in_hosts(authority_url: str | None) -> frozenset[str]:
    """``host:port`` of every place App Proxy may send a refused caller: the known sign-in hosts,
    and the credential's own authority (sovereign clouds, the emulator)."""
    hosts = {f"{h}:443" for h in KNOWN_SIGN_IN_HOSTS}
    if authority_url:
        hosts.add(origin_key(authority_url))
    return frozenset(hosts)


class _Response(Protocol):
    @property
    def status(self) -> int: ...
    def get(self, name: str) -> str | None: ...
    def getall(self, name: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """What the flow needs to know of an upstream's answer."""

    status: int
    location: str | None = None
    www_authenticate: tuple[str, ...] = ()

    @classmethod
    def of(cls, response: _Response) -> Answer:
        return cls(response.status, response.get("location"), tuple(response.getall("www-authenticate")))


def refusable(response: _Response) -> Answer | None:
    """The answer to look at — only a 401 or a redirect can be a refusal or a claims challenge;
    None for any other, passed on without a look at its headers (nearly every request)."""
    status = response.status
    if status != 401 and status not in REDIRECTS:
        return None
    return Answer.of(response)


def claims_challenge(answer: Answer) -> str | None:
    """The claims JSON of a CAE challenge (401 + ``error="insufficient_claims"``), else None."""
    if answer.status != 401:
        return None
    for value in answer.www_authenticate:
        params = dict(_CHALLENGE_PARAM.findall(value))
        if params.get("error") == "insufficient_claims" and params.get("claims"):
            encoded = params["claims"]
            try:
                decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_").decode()
            except (ValueError, UnicodeDecodeError):
                return None
            return decoded or None
    return None


def refusal(answer: Answer, hosts: Iterable[str]) -> Refusal | None:
    """ "sign-in" when App Proxy redirects to a sign-in host, "401" for a 401, else None."""
    if answer.status == 401:
        return "401"
    location = answer.location or ""
    if answer.status in REDIRECTS and location.startswith(("https://", "http://")) and origin_key(location) in hosts:
        return "sign-in"
    return None


async def send_with_token(
    send: Callable[[str | None], Awaitable[A]],
    answer_of: Callable[[A], Answer | None],
    discard: Callable[[A], None],
    *,
    token: str | None,
    provider: TokenProvider,
    hosts: frozenset[str],
    replayable: bool,
) -> tuple[A, RetryKind | None]:
    """Send with ``token``; retry once as the module docstring says. Returns the attempt to answer
    with and how it was retried. ``answer_of`` may say None for an answer that can't be a
    refusal (``refusable``: nearly every answer, passed on without a look at its headers).
    ``discard`` releases an attempt that won't be answered with."""
    attempt = await send(token)
    if token is None:
        return attempt, None
    answer = answer_of(attempt)
    if answer is None:
        return attempt, None
    return await answer_refusal(
        attempt, answer, send, answer_of, discard, token=token, provider=provider, hosts=hosts, replayable=replayable
    )


async def answer_refusal(
    attempt: A,
    answer: Answer,
    send: Callable[[str | None], Awaitable[A]],
    answer_of: Callable[[A], Answer | None],
    discard: Callable[[A], None],
    *,
    token: str,
    provider: TokenProvider,
    hosts: frozenset[str],
    replayable: bool,
) -> tuple[A, RetryKind | None]:
    """The rest of ``send_with_token`` once the first attempt's ``answer`` may be a refusal: for a
    caller that made the first attempt itself (the HTTP path, to keep a coroutine off every
    request that is not refused)."""
    challenge = claims_challenge(answer)
    if challenge is not None:
        claimed = await provider.refresh_with_claims(token, challenge) if replayable else None
        if claimed is None:
            return attempt, None
        discard(attempt)
        return await send(claimed), "claims"
    refused = refusal(answer, hosts)
    if refused is None:
        return attempt, None
    retried: RetryKind | None = None
    new = await provider.refresh_rejected(token) if replayable else None
    if not replayable:
        provider.reject(token)  # the next request gets a new token; this one can't be resent
    if new is not None:
        discard(attempt)
        attempt, retried = await send(new), "refused"
        again = answer_of(attempt)
        refused = refusal(again, hosts) if again is not None else None
    if refused == "sign-in":
        discard(attempt)
        hint = (
            "the app doesn't accept this token's audience or caller: set app_id = \"<the App Proxy app's application "
            '(client) ID>" on the route (the scope form every app accepts), and check that the credential may call '
            "the app; `bearerd doctor` shows the token's claims"
            if replayable
            else "the streamed request body could not be replayed; a new token was requested, send it again"
        )
        raise TokenRejected(f"the upstream refused the access token (redirect to sign-in); {hint}")
    return attempt, retried
