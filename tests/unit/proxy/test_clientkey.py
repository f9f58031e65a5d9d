"""The shared client key: Bearer or Basic in Proxy-Authorization, or a header of its own."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from bearerd.errors import ClientKeyRequired
from bearerd.proxy.clientkey import ClientKeyCheck

KEY = SecretStr("k3y-for-clients")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_proxy_authorization_accepts_bearer_and_basic_password() -> None:
    check = ClientKeyCheck("Proxy-Authorization", KEY)
    check.verify({"proxy-authorization": "Bearer k3y-for-clients"}.get)
    check.verify({"proxy-authorization": basic("bearerd", "k3y-for-clients")}.get)
    for wrong in ({}, {"proxy-authorization": "Bearer nope"}, {"proxy-authorization": basic("k3y-for-clients", "")}):
        with pytest.raises(ClientKeyRequired) as info:
            check.verify(wrong.get)
        assert info.value.status == 407 and "Proxy-Authenticate" in info.value.headers()
        assert "k3y" not in info.value.detail


def test_another_header_carries_the_key_itself_and_answers_401() -> None:
    check = ClientKeyCheck("X-Bearerd-Key", KEY)
    check.verify({"x-bearerd-key": "k3y-for-clients"}.get)
    with pytest.raises(ClientKeyRequired) as info:
        check.verify({"x-bearerd-key": "Bearer k3y-for-clients"}.get)
    assert info.value.status == 401 and info.value.headers() == {}
