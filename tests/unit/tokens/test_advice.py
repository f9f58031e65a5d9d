"""One-shot commands' advice: the most precise fix an identity provider's answer allows."""

from __future__ import annotations

from bearerd.tokens.advice import fix_for
from bearerd.tokens.results import IdentityProviderError, SignInRequired


def test_an_explained_aadsts_refusal_gets_no_second_fix() -> None:
    # identity.py already put its meaning and fix (aadsts.py) in the message.
    assert fix_for(IdentityProviderError("refused", code="invalid_client", aadsts=(7000222,)), "app") is None
    unknown = IdentityProviderError("refused", code="invalid_client", aadsts=(99999999,))
    assert fix_for(unknown, "app") == (
        "[credentials.app]: check the credential's secret, certificate or federated token against its app registration"
    )


def test_the_oauth_code_then_a_generic_fix() -> None:
    assert "raise timeout_s" in (fix_for(IdentityProviderError("slow", code="timeout"), "app") or "")
    assert fix_for(IdentityProviderError("?", code="something_new"), "app") == (
        "check [credentials.app] and its app registration"
    )


def test_a_sign_in_points_at_its_login_command() -> None:
    error = SignInRequired("no signed-in user; run: bearerd login alice -c f.toml", code="login_required")
    assert fix_for(error, "alice") == "sign in with the command above"
