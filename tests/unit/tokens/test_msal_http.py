"""Which identity-provider calls are resent after a stale connection, and on which errors."""

from __future__ import annotations

import http.client
import ssl

from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError, SSLError

from bearerd.tokens.msal_http import closed_by_peer, repeatable

TOKEN = "https://login.example/tenant/oauth2/v2.0/token"


def test_reads_and_calls_that_spend_nothing_are_repeatable() -> None:
    assert repeatable("GET", "https://login.example/tenant/v2.0/.well-known/openid-configuration", None)
    assert repeatable("POST", "https://login.example/tenant/oauth2/v2.0/devicecode", "client_id=x&scope=y")
    poll = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=abc&client_id=x"
    assert repeatable("POST", TOKEN, poll)
    assert repeatable("POST", TOKEN, b"grant_type=client_credentials&client_id=x&scope=y")


def test_redemptions_that_may_have_been_spent_are_not() -> None:
    assert not repeatable("POST", TOKEN, "grant_type=refresh_token&refresh_token=r&client_id=x")
    assert not repeatable("POST", TOKEN, "grant_type=authorization_code&code=c&client_id=x")
    assert not repeatable("POST", TOKEN, None)
    assert not repeatable("DELETE", TOKEN, None)


def test_only_a_connection_the_server_closed_is_retried() -> None:
    assert closed_by_peer(ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed")))
    assert closed_by_peer(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))
    assert closed_by_peer(SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")))
    assert not closed_by_peer(SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed")))
    assert not closed_by_peer(ReadTimeoutError(None, TOKEN, "read timed out"))  # type: ignore[arg-type]
    assert not closed_by_peer(NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    assert not closed_by_peer(None)
