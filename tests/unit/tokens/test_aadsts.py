"""The AADSTS table: every code the issue lists is explained with a meaning and a fix, found in
an answer's ``error_codes`` or its description, and the login fix names the credential's command."""

from __future__ import annotations

import pytest

from bearerd.tokens import aadsts

# The codes a first-time user meets (issue 14), and a word each fix must contain.
EXPECTED_FIX = {
    50105: "assign the user",
    65001: "authorize that client app",
    53000: "app-only credential",
    53003: "app-only credential",
    50076: "bearerd login",
    50079: "bearerd login",
    7000215: "Value",
    7000222: "new client secret",
    700016: "client_id",
    90002: "tenant_id",
    700027: "upload certificate_file",
    70011: "app_id",
    500011: "app_id",
    50173: "bearerd login",
    70043: "bearerd login",
}


@pytest.mark.parametrize("code", sorted(EXPECTED_FIX))
def test_every_listed_code_has_a_meaning_and_its_fix(code: int) -> None:
    explanation = aadsts.explain_code(code, "bearerd login alice -c /etc/bearerd/bearerd.toml")
    assert explanation is not None and explanation.meaning and explanation.fix
    assert EXPECTED_FIX[code] in explanation.fix
    line = explanation.line()
    assert line.startswith(f"AADSTS{code}: {explanation.meaning} — fix: ")
    assert "CREDENTIAL" not in line  # a login fix names the credential's own command
    assert explanation.needs_login == ("bearerd login" in EXPECTED_FIX[code])


def test_codes_come_from_error_codes_first_then_the_description() -> None:
    description = "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"
    assert aadsts.codes_in([7000215], description) == [7000215]
    assert aadsts.codes_in(None, description) == [7000215]
    assert aadsts.codes_in(["50105", 1], "AADSTS65001: no consent") == [50105, 1, 65001]
    found = aadsts.explain([999999, 50173], "")
    assert found is not None and found.code == 50173  # the first *known* code
    assert "bearerd login CREDENTIAL -c FILE" in found.fix  # without a credential: the generic command


def test_unknown_codes_and_plain_errors_explain_nothing() -> None:
    assert aadsts.explain(None, "invalid_client: something else") is None
    assert aadsts.explain([123], "") is None
    assert set(EXPECTED_FIX) <= set(aadsts.known_codes())
