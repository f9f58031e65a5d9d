"""The Key Vault adapter: azure-core's token protocol answered by a bearerd provider, for one audience only."""

from __future__ import annotations

import importlib.util
import re
import time

import pytest

from bearerd.tokens.provider import TokenProvider
from support.clock import FakeClock
from support.fakes import ScriptedSource

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("azure") is None or importlib.util.find_spec("azure.keyvault.secrets") is None,
    reason="the keyvault extra is not installed (pip install -e '.[keyvault]'; `make test` installs it)",
)

SCOPE = "https://vault.azure.net/.default"


def provider(clock: FakeClock) -> TokenProvider:
    return TokenProvider(ScriptedSource(lifetime_s=3600), "reader", (SCOPE,), clock=clock, call_later=clock.call_later)


async def test_the_vaults_audience_gets_the_providers_token_with_its_expiry() -> None:
    from bearerd.tokens.keyvault import ProviderCredential

    clock = FakeClock()
    credential = ProviderCredential(provider(clock))
    token = await credential.get_token(SCOPE, tenant_id="whatever", enable_cae=True)
    assert token.token == "token-1"
    assert 3590 < token.expires_on - time.time() <= 3600


async def test_any_other_audience_is_refused_whatever_the_challenge_asks() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from bearerd.tokens.keyvault import ProviderCredential

    source = ScriptedSource()
    credential = ProviderCredential(TokenProvider(source, "reader", (SCOPE,)))
    with pytest.raises(ClientAuthenticationError, match=re.escape("gives it only 'https://vault.azure.net/.default'")):
        await credential.get_token("https://management.azure.com/.default")
    assert source.calls == []  # nothing was even acquired
