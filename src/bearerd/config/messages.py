"""Validation errors as a person at a terminal needs them: ``[table] field: what is wrong — the fix``.

Everything a hint says is read off the schema at the moment of the error — the credential kinds
from the models' ``kind`` literals, the fields a table accepts from the model that table is — so
a new kind or setting can't leave a stale hint behind.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from bearerd.config.schema import (
    CREDENTIAL_MODELS,
    CacheSettings,
    ClientAuth,
    RouteMatch,
    RouteSettings,
    ServerSettings,
    Settings,
    credential_kinds,
)

_TABLES: dict[str, str] = {"server": "[server]", "cache": "[cache]"}


def describe_all(errors: Sequence[ErrorDetails]) -> list[str]:
    return [describe(e["loc"], e["type"], e["msg"]) for e in errors]


def describe(loc: tuple[int | str, ...], kind: str, msg: str) -> str:
    parts = [str(p) for p in loc]
    kinds = credential_kinds()
    # pydantic puts the discriminator's value into the location of a tagged union member.
    tag = parts.pop(2) if len(parts) >= 3 and parts[0] == "credentials" and parts[2] in kinds else None
    if parts and parts[0] in ("credentials", "routes") and len(parts) >= 2:
        table, field = f"[{parts[0]}.{parts[1]}]", ".".join(parts[2:])
    elif parts and parts[0] in _TABLES:
        table, field = _TABLES[parts[0]], ".".join(parts[1:])
    else:
        table, field = "(top level)", ".".join(parts)
    msg = msg.removeprefix("Value error, ")
    hint = _hint(parts, kind, tag, kinds)
    if not parts:  # cross-reference checks name their own table
        return msg + (f" — {hint}" if hint else "")
    where = f"{table} {field}".rstrip() if field else table
    return f"{where}: {msg}" + (f" — {hint}" if hint else "")


def _hint(parts: list[str], kind: str, tag: str | None, kinds: list[str]) -> str | None:
    quoted = ", ".join(kinds)
    if kind == "missing":
        return "add it"
    if kind == "union_tag_invalid":
        return f"kind must be one of {quoted}"
    if kind == "union_tag_not_found":
        return f'add kind = "<one of {quoted}>"'
    if kind == "too_short" and parts and parts[-1] == "scopes":
        return (
            "leave scopes out (the upstream's URL then names the app), set app_id = \"<the app's GUID>\", or give "
            'the scope, e.g. scopes = ["https://secretapi-contoso.msappproxy.net//.default"]'
        )
    if kind == "extra_forbidden" and parts:
        return _unknown_field_hint(parts, tag)
    return None


def _models_at(parts: list[str], tag: str | None) -> Sequence[type[BaseModel]]:
    """The model(s) whose field the last part of ``parts`` was meant to be."""
    head, depth = parts[0], len(parts)
    if head == "server":
        return [ClientAuth] if depth >= 3 and parts[1] == "client_auth" else [ServerSettings]
    if head == "cache":
        return [CacheSettings]
    if head == "routes" and depth >= 3:
        return [RouteMatch] if depth >= 4 and parts[2] == "match" else [RouteSettings]
    if head == "credentials" and depth >= 3:
        chosen = [m for m in CREDENTIAL_MODELS if tag is not None and tag in _kind_of(m)]
        return chosen or list(CREDENTIAL_MODELS)
    return [Settings]


def _kind_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["kind"].annotation)


def _unknown_field_hint(parts: list[str], tag: str | None) -> str:
    name = parts[-1]
    here: set[str] = set()
    for model in _models_at(parts, tag):
        here |= set(model.model_fields)
    # A secret written in the file where the schema reads it from a source: say which source.
    sources = [f"{name}{suffix}" for suffix in ("_file", "_env") if f"{name}{suffix}" in here]
    if sources:
        return f"{name} is not a setting: put the secret in {' or '.join(sources)} (a file must be mode 0600)"
    # A real setting of another table: say where it goes instead of guessing a spelling.
    if parts[0] == "routes" and any(name in m.model_fields for m in CREDENTIAL_MODELS):
        return f"{name} is a setting of the route's credential: move it to that [credentials.NAME] table"
    if parts[0] == "credentials" and name in RouteSettings.model_fields:
        return f"{name} is a setting of a route: move it to the [routes.NAME] tables that use this credential"
    if parts[0] == "credentials" and tag is not None and name not in here:
        owners = [m for m in CREDENTIAL_MODELS if name in m.model_fields]
        kinds = [k for k in credential_kinds() if any(k in _kind_of(m) for m in owners)]
        if kinds:
            return f"{name} belongs to kind = {' or '.join(repr(k) for k in kinds)}, not {tag!r}"
    close = difflib.get_close_matches(name, sorted(here), n=1)
    return f"unknown setting; did you mean {close[0]!r}?" if close else "unknown setting; remove it"
