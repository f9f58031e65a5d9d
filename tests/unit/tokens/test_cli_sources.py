"""What az and azd print, parsed: expiry in each of their formats, and their failures classified."""

from __future__ import annotations

import datetime
import json

import pytest

from bearerd.tokens.cli_sources import AZ, AZD, failure, parse_answer, scrub
from bearerd.tokens.results import IdentityProviderError, SignInRequired

NOW = 1_700_000_000.0


def test_az_epoch_expires_on_wins_over_the_local_time() -> None:
    out = {"accessToken": "tok", "expiresOn": "1999-01-01 00:00:00.000000", "expires_on": int(NOW) + 3000}
    token = parse_answer(AZ, json.dumps(out).encode(), NOW)
    assert token.value == "tok" and token.expires_in == 3000


def test_az_expires_on_as_a_numeric_string() -> None:
    out = {"accessToken": "tok", "expires_on": str(int(NOW) + 60)}
    assert parse_answer(AZ, json.dumps(out).encode(), NOW).expires_in == 60


def test_older_az_gives_only_local_time() -> None:
    local = datetime.datetime.fromtimestamp(NOW + 1800).strftime("%Y-%m-%d %H:%M:%S.%f")
    token = parse_answer(AZ, json.dumps({"accessToken": "tok", "expiresOn": local}).encode(), NOW)
    assert token.expires_in == pytest.approx(1800, abs=1)


def test_azd_rfc3339_utc() -> None:
    utc = datetime.datetime.fromtimestamp(NOW + 900, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = parse_answer(AZD, json.dumps({"token": "tok", "expiresOn": utc}).encode(), NOW)
    assert token.value == "tok" and token.expires_in == 900


@pytest.mark.parametrize("stdout", [b"not json", b"[]", b'{"accessToken": ""}', b'{"accessToken": "t"}'])
def test_answers_without_a_token_or_expiry_are_malformed(stdout: bytes) -> None:
    with pytest.raises(IdentityProviderError) as info:
        parse_answer(AZ, stdout, NOW)
    assert info.value.code == "malformed"


def test_not_logged_in_is_a_sign_in_naming_the_command() -> None:
    error = failure(AZ, 1, b"ERROR: Please run 'az login' to setup account.\n")
    assert isinstance(error, SignInRequired)
    assert str(error).endswith("run: az login")
    error = failure(AZD, 1, b"\nERROR: not logged in, run `azd auth login` to login\n")
    assert isinstance(error, SignInRequired) and str(error).endswith("run: azd auth login")


def test_consent_missing_is_not_a_login_even_though_az_suggests_az_login() -> None:
    stderr = (
        b"ERROR: AADSTS65001: The user or administrator has not consented to use the application with ID "
        b"'04b07795-8ddb-461a-bbee-02f9e1bf7b46' named 'Microsoft Azure CLI'. Send an interactive authorization "
        b"request for this user and resource.\nTrace ID: x\nCorrelation ID: y\nTimestamp: 2026-01-01 00:00:00Z\n"
        b"Interactive authentication is needed. Please run:\naz login --scope https://app//.default\n"
    )
    error = failure(AZ, 1, stderr)
    assert not isinstance(error, SignInRequired)
    assert error.code == "consent_required" and error.permanent
    assert "authorized client application" in str(error)


def test_other_failures_show_the_first_line_without_any_token() -> None:
    error = failure(AZ, 2, b"ERROR: boom eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl leaked\nmore\n")
    assert str(error) == "az failed (exit 2): boom **** leaked"
    assert scrub("") == ""
