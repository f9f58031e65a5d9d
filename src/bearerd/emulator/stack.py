"""``EmulatorStack``: Entra + backend + App Proxy apps on loopback, started and stopped together.

Sockets are bound first (port 0) so every URL — authority, external URLs, app ID URIs — is
known before the apps are built. Each App Proxy app is registered as publishing does it (app ID
URI = its external URL, a stable application ID from its name, v1 tokens, no assignment
required); tests change what a real tenant would let an administrator change. Used by
``bearerd demo``, ``bearerd emulator`` and the tests.
"""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import jwt
from aiohttp import web

from bearerd.emulator.appproxy import AppProxyEmulator
from bearerd.emulator.backend import backend_app
from bearerd.emulator.entra import FEDERATION_AUDIENCE, EntraEmulator
from bearerd.emulator.keyvault import VAULT_RESOURCE, KeyVaultEmulator
from bearerd.emulator.pki import LocalCA, make_client_certificate, throwaway_rsa_key, write_private
from bearerd.emulator.registrations import app_id_for
from bearerd.lifecycle import Lifecycle

DEFAULT_TENANT = "7e5a1f00-0000-4000-8000-00000000b0d1"
SECRET_CLIENT_ID = "0b5e0000-0000-4000-8000-0000000c11e1"  # noqa: S105 - an app ID, not a secret
CERT_CLIENT_ID = "0b5e0000-0000-4000-8000-0000000c11e2"
FEDERATED_CLIENT_ID = "0b5e0000-0000-4000-8000-0000000c11e3"
SYSTEM_IDENTITY_ID = "0b5e0000-0000-4000-8000-0000000c11e4"
PUBLIC_CLIENT_ID = "0b5e0000-0000-4000-8000-0000000c11e6"
DEMO_USER = "alice@contoso.example"
USER_IDENTITY_ID = "0b5e0000-0000-4000-8000-0000000c11e5"
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the real Azure CLI's, as its tokens carry it
FEDERATED_ISSUER = "https://oidc.cluster.emulator/6f0e0000"
FEDERATED_SUBJECT = "system:serviceaccount:default:legacy-app"


SHUTDOWN_TIMEOUT_S = 0.5


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class EmulatorStack(Lifecycle):
    def __init__(
        self,
        workdir: Path,
        *,
        token_lifetime_s: int = 3600,
        refresh_in_s: int | None = None,
        apps: tuple[str, ...] = ("secretapi",),
        tenant_id: str = DEFAULT_TENANT,
    ) -> None:
        self.workdir = workdir
        self.tenant_id = tenant_id
        self.entra = EntraEmulator(tenant_id, token_lifetime_s=token_lifetime_s, refresh_in_s=refresh_in_s)
        self._app_names = apps
        self.apps: dict[str, AppProxyEmulator] = {}
        self.secret_client_id = SECRET_CLIENT_ID
        self.cert_client_id = CERT_CLIENT_ID
        self.federated_client_id = FEDERATED_CLIENT_ID
        self.federated_token_file = workdir / "federated-token"
        self._issuer_key = throwaway_rsa_key("federated-issuer")
        self.client_secret_file = workdir / "client-secret"
        # The stand-in `az`/`azd` (tests) sign in as the Azure CLI's client ID with this secret.
        self.azure_cli_secret_file = workdir / "azure-cli-secret"
        self.keyvault = KeyVaultEmulator(self.entra)
        self.cert_file = workdir / "client-cert.pem"
        self.key_file = workdir / "client-key.pem"
        self.ca_file = workdir / "ca.pem"
        self.authority = ""
        self.backend_url = ""
        self.managed_identity_url = ""  # base of the App Service / IMDS endpoints (plain http)
        self.system_identity_id = SYSTEM_IDENTITY_ID
        self.public_client_id = PUBLIC_CLIENT_ID
        self.user = DEMO_USER
        self.user_identity_id = USER_IDENTITY_ID
        self._runners: list[web.BaseRunner] = []

    async def _serve(self, app: web.Application, sock: socket.socket, tls: bool) -> None:
        # A stand-in stops without waiting for answers nobody awaits any more (a stalled stream, a
        # slow endpoint whose client left): aiohttp's default would wait up to a minute for them.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        self._runners.append(runner)
        site = web.SockSite(runner, sock, ssl_context=self._ca.server_context() if tls else None)
        await site.start()

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ca = LocalCA(self.workdir)
        secret = secrets.token_urlsafe(32)
        write_private(self.client_secret_file, secret.encode())
        cert_pem = make_client_certificate(
            self.cert_file, self.key_file, "bearerd-emulator-client", throwaway_rsa_key("client-certificate")
        )
        self.entra.register_client(self.secret_client_id, secret=secret, roles=["Api.Access"])
        self.entra.register_client(self.cert_client_id, certificate_pem=cert_pem, roles=["Api.Access"])
        self.entra.register_client(self.federated_client_id, roles=["Api.Access"])
        self.entra.register_federated(
            self.federated_client_id,
            issuer=FEDERATED_ISSUER,
            subject=FEDERATED_SUBJECT,
            key=self._issuer_key.public_key(),
        )
        self.write_federated_token()
        self.entra.register_managed_identity(SYSTEM_IDENTITY_ID, system_assigned=True)
        self.entra.register_managed_identity(USER_IDENTITY_ID)
        self.entra.users.register_public_client(PUBLIC_CLIENT_ID)
        self.entra.users.add_user(DEMO_USER)
        cli_secret = secrets.token_urlsafe(32)
        write_private(self.azure_cli_secret_file, cli_secret.encode())
        self.entra.register_client(AZURE_CLI_CLIENT_ID, secret=cli_secret, roles=["Api.Access"])
        self.entra.register_resource(VAULT_RESOURCE)

        entra_sock, backend_sock = _bound_socket(), _bound_socket()
        self.authority = f"https://127.0.0.1:{entra_sock.getsockname()[1]}/{self.tenant_id}"
        self.entra.tokens.authority_base = self.authority
        self.backend_url = f"http://127.0.0.1:{backend_sock.getsockname()[1]}"
        await self._serve(self.entra.app(), entra_sock, tls=True)
        self.backend_app = backend_app()
        await self._serve(self.backend_app, backend_sock, tls=False)
        identity_sock = _bound_socket()
        self.managed_identity_url = f"http://127.0.0.1:{identity_sock.getsockname()[1]}"
        await self._serve(self.entra.managed_identity_app(), identity_sock, tls=False)
        vault_sock = _bound_socket()
        self.keyvault.url = f"https://127.0.0.1:{vault_sock.getsockname()[1]}"
        await self._serve(self.keyvault.app(), vault_sock, tls=True)
        for name in self._app_names:
            sock = _bound_socket()
            external = f"https://127.0.0.1:{sock.getsockname()[1]}/"
            app = AppProxyEmulator(
                name,
                external,
                self.backend_url,
                self.entra,
                # Publishing an app registers it: app ID URI = external URL, and an application ID.
                registration=self.entra.register_resource(external, app_id=app_id_for(name)),
                required_scope="user_impersonation",  # what delegated tokens for App Proxy apps carry
            )
            self.apps[name] = app
            await self._serve(app.app(), sock, tls=True)

    def managed_identity_environment(self, source: str = "app_service") -> dict[str, str]:
        """The variables an Azure host sets, pointing MSAL at this emulator instead."""
        if source == "app_service":
            return {
                "IDENTITY_ENDPOINT": self.managed_identity_url + "/msi/token",
                "IDENTITY_HEADER": self.entra.identity_header,
            }
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": self.managed_identity_url}  # IMDS

    def write_federated_token(self, lifetime_s: int = 3600) -> str:
        """Write a service-account token like the one Kubernetes projects into the pod (and rotates)."""
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": FEDERATED_ISSUER,
                "sub": FEDERATED_SUBJECT,
                "aud": [FEDERATION_AUDIENCE],
                "iat": now,
                "nbf": now,
                "exp": now + lifetime_s,
            },
            self._issuer_key,
            algorithm="RS256",
        )
        write_private(self.federated_token_file, token.encode())
        return token

    async def _stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
