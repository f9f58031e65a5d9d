"""Header hygiene between client and upstream: what crosses the proxy, and what never does.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, so they are dropped in both
directions together with every header the ``Connection`` header names. ``Host`` is the
upstream's. The client's own ``Authorization`` follows the route's policy; our bearer token is
added by the caller after this, so nothing here ever sees a token. A route's ``set_headers`` are
added here and the client's own copies of them dropped (a client can't forge or override them),
as are its ``remove_headers``. Each direction is one pass over the header list, with the
per-route part (``UpstreamRules``) computed once per route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bearerd.errors import ClientAuthRejected

Pairs = Sequence[tuple[str, str]]

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
# Also never forwarded upstream as they came: Host is rebuilt, Expect is answered by us.
_NOT_FORWARDED_UP = HOP_BY_HOP | {"host", "expect"}


@dataclass(frozen=True, slots=True)
class UpstreamRules:
    """One route's header rules, computed once: its Host, what it drops, its Authorization policy and
    the headers it adds (``set_headers``, values possibly secret: never in its repr)."""

    host: str
    policy: str  # replace | reject | passthrough | move:<Header>
    drop: frozenset[str]
    move_to: str | None
    add: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(
        cls,
        host: str,
        policy: str,
        own: Iterable[str] = (),
        *,
        add: Iterable[tuple[str, str]] = (),
        remove: Iterable[str] = (),
    ) -> UpstreamRules:
        """``own`` names (lower-case) headers that are for bearerd only, like the client key header;
        ``add`` the route's ``set_headers`` (name, value); ``remove`` its ``remove_headers``."""
        move_to = policy[5:] if policy.startswith("move:") else None
        added = tuple(add)
        # A client must not be able to forge the moved header or a set one by sending it itself.
        forged = {move_to.lower()} if move_to else set()
        forged.update(name.lower() for name, _ in added)
        removed = frozenset(name.lower() for name in remove)
        return cls(host, policy, _NOT_FORWARDED_UP | frozenset(own) | forged | removed, move_to, added)


def connection_named(values: Iterable[str]) -> frozenset[str]:
    """The (lower-case) header names a ``Connection`` header lists: hop-by-hop for this hop."""
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def upstream_headers(
    pairs: Pairs, index: Mapping[str, list[str]], rules: UpstreamRules
) -> tuple[list[tuple[str, str]], list[str], bool]:
    """Headers to send upstream, the client's ``Cookie`` values (for the cookie jar) and whether
    bearerd adds its own token. ``reject`` refuses a client ``Authorization``; ``passthrough``
    forwards it and adds no token; ``move:X`` carries it in header X; ``replace`` drops it."""
    named = connection_named(index["connection"]) if "connection" in index else frozenset()
    drop = rules.drop
    out: list[tuple[str, str]] = [("Host", rules.host)]
    cookies: list[str] = []
    client_auth: list[str] = []
    for name, value in pairs:
        lname = name.lower()
        if lname == "authorization":
            client_auth.append(value)
        elif lname == "cookie":
            cookies.append(value)
        elif lname not in drop and lname not in named:
            out.append((name, value))
    if rules.add:
        out.extend(rules.add)
    if not client_auth:
        return out, cookies, True
    policy = rules.policy
    if policy == "reject":
        raise ClientAuthRejected(
            "this route adds its own token and refuses requests that carry an Authorization header; "
            "remove it from the client"
        )
    if policy == "passthrough":
        out.extend(("Authorization", value) for value in client_auth)
        return out, cookies, False
    if rules.move_to is not None:
        out.extend((rules.move_to, value) for value in client_auth)
    return out, cookies, True


def downstream_headers(
    pairs: Pairs,
    index: Mapping[str, list[str]],
    set_cookie: Callable[[str], str | None],
    location: Callable[[str], str],
) -> list[tuple[str, str]]:
    """Response headers for the client: end-to-end ones only, each ``Set-Cookie`` through
    ``set_cookie`` (None: kept by bearerd), ``Location`` through ``location``."""
    named = connection_named(index["connection"]) if "connection" in index else frozenset()
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in named:
            continue
        if lname == "set-cookie":
            kept = set_cookie(value)
            if kept is not None:
                out.append((name, kept))
        elif lname == "location":
            out.append((name, location(value)))
        else:
            out.append((name, value))
    return out
