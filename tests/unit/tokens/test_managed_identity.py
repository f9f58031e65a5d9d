"""Which managed-identity service MSAL will ask, read off the host's variables as MSAL reads them."""

from __future__ import annotations

from bearerd.config.environment import ManagedIdentityHost
from bearerd.tokens.managed_identity import service


def test_the_source_is_chosen_as_msal_chooses_it() -> None:
    app = {"IDENTITY_ENDPOINT": "http://127.0.0.1:41/msi/token", "IDENTITY_HEADER": "h-secret"}
    assert ManagedIdentityHost.from_environ(app).source == "app_service"
    assert ManagedIdentityHost.from_environ(app | {"IDENTITY_SERVER_THUMBPRINT": "ab"}).source == "service_fabric"
    assert ManagedIdentityHost.from_environ({"MSI_ENDPOINT": "http://x/", "MSI_SECRET": "s"}).source == "azure_ml"
    arc = {"IDENTITY_ENDPOINT": "http://localhost:40342/metadata/identity/oauth2/token", "IMDS_ENDPOINT": "x"}
    assert ManagedIdentityHost.from_environ(arc).source == "arc"
    assert ManagedIdentityHost.from_environ({}) == ManagedIdentityHost("imds", None, None)
    assert "h-secret" not in repr(ManagedIdentityHost.from_environ(app))  # the header is a secret: never kept


def test_the_service_is_named_with_where_it_was_asked() -> None:
    assert service(ManagedIdentityHost()) == "the Azure instance metadata service (IMDS) at http://169.254.169.254"
    env = {"IDENTITY_ENDPOINT": "http://127.0.0.1:41/msi/token", "IDENTITY_HEADER": "h"}
    host = ManagedIdentityHost.from_environ(env)
    assert service(host) == "the App Service identity endpoint at http://127.0.0.1:41/msi/token"
