"""Header hygiene between client and upstream: what crosses the proxy, and what never does.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, so they are dropped in both
directions together with every header the ``Connection`` header names. ``Host`` is the
upstream's. The client's own ``Authorization`` follows the route's policy; our bearer token is
added by the caller of ``upstream_headers`` after this, so nothing here ever sees a token.
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

from bearerd.errors import ClientAuthRejected

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Also never forwarded upstream: Host is rebuilt, Expect is answered by us, not passed on.
_NOT_FORWARDED_UP = HOP_BY_HOP | {"host", "expect", "authorization"}
_NOT_FORWARDED_DOWN = HOP_BY_HOP


def _connection_named(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def upstream_headers(
    incoming: CIMultiDictProxy[str], policy: str, upstream_host: str, drop: frozenset[str] = frozenset()
) -> tuple[CIMultiDict[str], bool]:
    """Headers to send upstream, and whether bearerd should add its own token.

    ``drop`` names (lower-case) headers that are for bearerd only, like the client key header.
    ``policy`` is the route's ``client_authorization``: ``replace`` drops the client's
    Authorization, ``move:X`` carries it in header X, ``reject`` refuses it, ``passthrough``
    forwards it and then adds no token of ours.
    """
    named = _connection_named(incoming) | drop
    out: CIMultiDict[str] = CIMultiDict()
    out["Host"] = upstream_host
    for name, value in incoming.items():
        lname = name.lower()
        if lname in _NOT_FORWARDED_UP or lname in named:
            continue
        out.add(name, value)
    client_auth = incoming.getall("Authorization", ())
    add_token = True
    if client_auth:
        if policy == "reject":
            raise ClientAuthRejected(
                "this route adds its own token and refuses requests that carry an Authorization header; "
                "remove it from the client"
            )
        if policy == "passthrough":
            for value in client_auth:
                out.add("Authorization", value)
            add_token = False
        elif policy.startswith("move:"):
            target = policy[5:]
            out.popall(target, None)
            for value in client_auth:
                out.add(target, value)
    elif policy.startswith("move:"):
        # A client must not be able to forge the moved header by sending it itself.
        out.popall(policy[5:], None)
    return out, add_token


def downstream_headers(incoming: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """Response headers for the client: end-to-end ones only."""
    named = _connection_named(incoming) | frozenset(d.lower() for d in drop)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lname = name.lower()
        if lname in _NOT_FORWARDED_DOWN or lname in named:
            continue
        out.add(name, value)
    return out
