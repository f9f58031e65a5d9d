"""The boundary to MSAL: build one MSAL application per credential and translate its answers.

MSAL is synchronous and surprising (see shared/MSAL-NOTES.md): discovery runs in the
constructor, a 5xx raises while a 400 returns an error dict, and ``requests`` lets
``REQUESTS_CA_BUNDLE`` silently replace a session's CA file. Everything MSAL does goes through
this module, which

* builds the MSAL app lazily (inside the worker thread, retried on the next acquisition when the
  identity provider was down), never at import or config time;
* gives MSAL an HTTP session whose trust (system CAs + ``ca_file``), outbound proxy and timeouts
  come from the settings and cannot be overridden by the environment;
* declares the client capability ``cp1`` (continuous access evaluation), so Entra sends this
  client claims challenges instead of leaving the challenge path unused;
* turns every outcome into an ``AcquiredToken`` or an ``IdentityProviderError`` whose message is
  safe to log and to show (no token, secret or assertion, ever), with an AADSTS code explained
  as meaning + fix (``aadsts.py``) so every place that shows the error shows the fix.

Nothing here is async and nothing here is called on the event loop: ``sources.py`` runs it in a
worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests
import structlog

from bearerd.config.environment import Egress, ManagedIdentityHost
from bearerd.config.loader import Config
from bearerd.config.schema import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    Credential,
    DeviceCodeCredential,
    ManagedIdentityCredential,
)
from bearerd.config.scopes import resource_of
from bearerd.config.secrets import CredentialSecrets
from bearerd.errors import ConfigError, first_line
from bearerd.tokens import aadsts, credfiles
from bearerd.tokens.backoff import will_repeat
from bearerd.tokens.keyring import KeyringUnavailable, choose_sealer
from bearerd.tokens.managed_identity import explain
from bearerd.tokens.msal_http import MsalSession, tls_context
from bearerd.tokens.results import AcquiredToken, IdentityProviderError, SignInRequired
from bearerd.tokens.usercache import PersistentTokenCache, cache_path

log = structlog.get_logger("bearerd.tokens")


class _NoReplayCache(dict[Any, Any]):
    """An ``http_cache`` that remembers nothing.

    MSAL replays a 5xx/429 from this cache for seconds (a 400 for 60 s) without asking the
    identity provider again. bearerd backs off itself — with jitter and the provider's own
    Retry-After — so MSAL's replay would only delay recovery once the provider is back.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


def _read_assertion(path: Path) -> Callable[[], str]:
    def read() -> str:
        # Read on every acquisition: Kubernetes rotates the projected token file underneath us.
        return path.read_text(encoding="utf-8").strip()

    return read


def _managed_identity(cred: ManagedIdentityCredential) -> Any:
    if cred.client_id:
        return msal.UserAssignedManagedIdentity(client_id=cred.client_id)
    if cred.object_id:
        return msal.UserAssignedManagedIdentity(object_id=cred.object_id)
    if cred.resource_id:
        return msal.UserAssignedManagedIdentity(resource_id=cred.resource_id)
    return msal.SystemAssignedManagedIdentity()


def _client_credential(
    cred: ClientSecretCredential | CertificateCredential | ClientAssertionCredential, secrets: CredentialSecrets
) -> str | dict[str, Any]:
    if isinstance(cred, ClientSecretCredential):
        assert secrets.client_secret is not None  # noqa: S101 - resolved at load time
        return secrets.client_secret.get_secret_value()
    if isinstance(cred, ClientAssertionCredential):
        return {"client_assertion": _read_assertion(cred.token_file)}
    material = secrets.certificate
    assert material is not None  # noqa: S101 - resolved at load time
    key = material.private_key_pem.get_secret_value()
    if cred.send_x5c:
        # Subject name/issuer auth: given the certificate (and no thumbprint), MSAL signs PS256 with
        # the SHA-256 thumbprint and sends the certificate chain (x5c).
        return {"private_key": key, "public_certificate": material.certificate_pem}
    # Given a thumbprint, MSAL signs RS256 with the SHA-1 thumbprint (x5t), as registered certificates expect.
    return {"private_key": key, "thumbprint": material.thumbprint}


# Continuous access evaluation: declaring "cp1" makes Entra send claims challenges (and longer-lived
# tokens) to this client; MSAL then sends xms_cc with every token request (MSAL-NOTES.md).
CLIENT_CAPABILITIES = ["cp1"]


# Answers that mean "the user must sign in (again)", not "try again later".
_INTERACTION_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
# How often a credential waiting for `bearerd login` looks at its cache file again (no network call).
LOGIN_RECHECK_S = 2.0


class CredentialClient:
    """One MSAL application for one credential, shared by all of its routes."""

    def __init__(
        self,
        name: str,
        cred: Credential,
        secrets: CredentialSecrets,
        egress: Egress,
        state_dir: Path | None = None,
        config_file: str = "FILE",
        managed_identity_host: ManagedIdentityHost | None = None,
    ) -> None:
        self.name = name
        self.managed_identity_host = managed_identity_host or ManagedIdentityHost()
        self.credential = cred
        self.secrets = secrets
        self.loaded_secrets = secrets  # what the configuration resolved; ``secrets`` may have rotated since
        self.ssl_context = tls_context(str(cred.ca_file) if cred.ca_file else None)
        self._session = MsalSession(self.ssl_context, egress, cred.connect_timeout_s, cred.timeout_s)
        self._app: msal.ClientApplication | msal.ManagedIdentityClient | None = None
        self._cache: msal.TokenCache = msal.TokenCache()
        user_cache: Path | None = None
        if isinstance(cred, DeviceCodeCredential):
            path = user_cache = cache_path(state_dir or Path("."), name)
            try:
                sealer, protection = choose_sealer(cred.cache_protection, path)
            except KeyringUnavailable as exc:
                raise ConfigError(
                    config_file,
                    [
                        f'[credentials.{name}] cache_protection = "keyring": {exc} — install '
                        "'bearerd[keyring]' and run a Secret Service (GNOME Keyring, KWallet), or set "
                        'cache_protection = "auto"'
                    ],
                ) from None
            self._cache = PersistentTokenCache(path, sealer, protection)
        self.login_command = f"bearerd login {name} -c {config_file}"
        self._build_lock = threading.Lock()
        self._app_secrets = secrets  # what the MSAL app (once built) signs in with
        self._files = credfiles.credential_files(cred, user_cache)

    @classmethod
    def for_config(cls, config: Config, name: str) -> CredentialClient:
        """The client for credential ``name`` of a loaded configuration."""
        return cls(
            name,
            config.settings.credentials[name],
            config.secrets.for_credential(name),
            config.egress,
            config.state_dir,
            config.source_file,
            config.managed_identity,
        )

    @property
    def persistent_cache(self) -> PersistentTokenCache | None:
        return self._cache if isinstance(self._cache, PersistentTokenCache) else None

    def close(self) -> None:
        self._session.close()

    def use_secrets(self, secrets: CredentialSecrets) -> None:
        """Rotated material (``material.py``): the next acquisition builds the MSAL app with it."""
        self.secrets = secrets  # one assignment: application() notices it under its own lock

    def files_stamp(self) -> credfiles.Stamp:
        """The files this credential signs in with, as they are now (see ``credfiles.py``)."""
        return credfiles.stamp(self._files)

    def application(self) -> msal.ClientApplication | msal.ManagedIdentityClient:
        """The MSAL app, built on first use (its constructor runs discovery over the network)."""
        with self._build_lock:
            if self._app is None or self._app_secrets is not self.secrets:
                self._app_secrets = self.secrets
                cred = self.credential
                # Every app: our HTTP session (trust, proxy, timeouts), our cache, no replayed failures,
                # and the cp1 capability (Entra sends CAE claims challenges only to clients declaring it).
                common: dict[str, Any] = {
                    "http_client": self._session,
                    "token_cache": self._cache,
                    "http_cache": _NoReplayCache(),
                    "client_capabilities": CLIENT_CAPABILITIES,  # managed identity relays it where the host can
                }
                if isinstance(cred, ManagedIdentityCredential):
                    self._app = msal.ManagedIdentityClient(_managed_identity(cred), **common)
                elif isinstance(cred, DeviceCodeCredential):
                    self._app = msal.PublicClientApplication(
                        cred.client_id, authority=cred.authority_url, instance_discovery=False, **common
                    )
                elif isinstance(cred, ClientSecretCredential | CertificateCredential | ClientAssertionCredential):
                    self._app = msal.ConfidentialClientApplication(
                        cred.client_id,
                        client_credential=_client_credential(cred, self._app_secrets),
                        authority=cred.authority_url,
                        instance_discovery=False,
                        **common,
                    )
                else:  # the CLI kinds have no MSAL app (cli_sources.py); environment/default were resolved
                    raise TypeError(f"credential kind {cred.kind!r} has no MSAL application")
            return self._app

    def _request_token(self, scopes: tuple[str, ...], claims: str | None) -> Any:
        app = self.application()
        if isinstance(app, msal.PublicClientApplication):
            return self._request_user_token(app, scopes, claims)
        # Drop MSAL's cached copy: bearerd is the cache, and MSAL would hand back its copy until five
        # minutes before expiry, so an early refresh would get nothing new.
        for entry in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            self._cache.remove_at(entry)
        if isinstance(app, msal.ManagedIdentityClient):
            # Managed identity speaks the v1 "resource" dialect: the scope without "/.default".
            return app.acquire_token_for_client(resource=resource_of(scopes[0]), claims_challenge=claims)
        assert isinstance(app, msal.ConfidentialClientApplication)  # noqa: S101 - by construction
        return app.acquire_token_for_client(scopes=list(scopes), claims_challenge=claims)

    def _request_user_token(
        self, app: msal.PublicClientApplication, scopes: tuple[str, ...], claims: str | None
    ) -> Any:
        """Silent only: the daemon never prompts. The cache file is re-read (a login may have happened)
        and written back after every acquisition, because refresh tokens rotate."""
        cache = self.persistent_cache
        assert cache is not None  # noqa: S101 - device_code credentials always have one
        cred = self.credential
        with cache.locked():
            if cache.sealed_elsewhere is not None:
                raise SignInRequired(cache.sealed_elsewhere, code="login_required", retry_after=LOGIN_RECHECK_S)
            accounts = app.get_accounts(username=getattr(cred, "username", None))
            if not accounts:
                raise SignInRequired(
                    f"no signed-in user in {cache.path}; run: {self.login_command}",
                    code="login_required",
                    retry_after=LOGIN_RECHECK_S,
                )
            # force_refresh: bearerd keeps the access token itself; asking means "a new one, please".
            result = app.acquire_token_silent_with_error(
                list(scopes), accounts[0], force_refresh=True, claims_challenge=claims
            )
        if result is None:
            raise SignInRequired(
                f"the cached sign-in can't be used for these scopes; run: {self.login_command}",
                code="login_required",
                retry_after=LOGIN_RECHECK_S,
            )
        if isinstance(result, dict) and result.get("error") in _INTERACTION_ERRORS:
            description = str(result.get("error_description", ""))
            explanation = aadsts.explain(result.get("error_codes"), description, self.login_command)
            if explanation is not None and not explanation.needs_login:
                # Not assigned, no consent, Conditional Access: another sign-in won't help; back off.
                raise IdentityProviderError(
                    f"identity provider refused ({result.get('error')}): {explanation.line()}",
                    code=str(result.get("error")),
                    permanent=True,
                    aadsts=_error_codes(result),
                )
            # The identity provider refused the refresh token: it will say so again until the user
            # signs in (the cache file changes), so this backs off instead of asking every few seconds.
            raise SignInRequired(
                f"the user must sign in again: {result.get('error')}, {explanation.line()}"
                if explanation is not None
                else f"the user must sign in again ({result.get('error')}: {first_line(description, 120)}); "
                f"run: {self.login_command}",
                code="login_required",
                permanent=True,
                aadsts=_error_codes(result),
            )
        return result

    def acquire(self, scopes: tuple[str, ...], claims: str | None = None) -> AcquiredToken:
        """Blocking: a new token from the identity provider (see ``_acquire``); a managed identity's
        failure is said as what happened and what to set (``managed_identity.py``)."""
        try:
            return self._acquire(scopes, claims)
        except IdentityProviderError as exc:
            if not isinstance(self.credential, ManagedIdentityCredential):
                raise
            resource = scopes[0].removesuffix("/.default")
            explained = explain(exc, self.managed_identity_host, self._session.last_status(), resource)
            if explained is exc:
                raise
            raise explained from exc

    def _acquire(self, scopes: tuple[str, ...], claims: str | None = None) -> AcquiredToken:
        """Blocking: a new app-only token from the identity provider, never MSAL's cached copy.

        bearerd is the cache (one in-memory token per route, refreshed early), so every call here
        means "fetch a fresh one": MSAL's copy is dropped first, because MSAL would hand back its
        cached token until 5 minutes before expiry and our early refresh would get nothing new.
        """
        self._session.begin()
        try:
            result = self._request_token(scopes, claims)
        except IdentityProviderError:
            raise
        except msal.exceptions.MsalServiceError as exc:  # MSAL raises on 5xx
            status = getattr(exc, "error", None) or "server_error"
            raise IdentityProviderError(
                f"identity provider failed ({first_line(str(status))})",
                code="server_error",
                retry_after=self._session.retry_after(),
            ) from exc
        except requests.Timeout as exc:
            raise IdentityProviderError("identity provider timed out", code="timeout") from exc
        except requests.ConnectionError as exc:
            raise IdentityProviderError(
                f"identity provider unreachable ({_connection_reason(exc)})", code="unreachable"
            ) from exc
        except requests.RequestException as exc:
            raise IdentityProviderError(
                f"identity provider request failed ({type(exc).__name__})", code="http"
            ) from exc
        except OSError as exc:  # the assertion file could not be read
            raise IdentityProviderError(
                f"cannot read the client assertion file ({exc.strerror or type(exc).__name__})", code="assertion_file"
            ) from exc
        except ValueError as exc:  # JSON decoding of a garbage answer, or a discovery document MSAL refuses
            # Discovery of an unknown tenant: MSAL re-raises the 400 (whose body says AADSTS90002) as
            # its own ValueError, so the answer is in the exception it was handling.
            text = f"{exc} {exc.__context__ or ''}"
            explanation = aadsts.explain(None, text, self.login_command)
            if explanation is not None:
                raise IdentityProviderError(
                    f"identity provider refused: {explanation.line()}", code=f"AADSTS{explanation.code}", permanent=True
                ) from exc
            raise IdentityProviderError(
                "identity provider sent an answer MSAL could not read (not JSON or an invalid discovery document)",
                code="malformed",
            ) from exc
        if not isinstance(result, dict):
            raise IdentityProviderError("identity provider returned no result", code="malformed")
        if "error" in result:
            code = str(result.get("error"))
            description = str(result.get("error_description", ""))
            explanation = aadsts.explain(result.get("error_codes"), description, self.login_command)
            codes = _error_codes(result)
            raise IdentityProviderError(
                f"identity provider refused ({code}): {explanation.line()}"
                if explanation is not None
                else f"identity provider refused: {code}: {first_line(description)}",
                code=code,
                retry_after=self._session.retry_after(),
                # Refusals that will be repeated back off to minutes; a change of the credential's
                # files (a rotated federated token, a new secret) ends the wait (provider.py).
                permanent=will_repeat(code, codes),
                aadsts=codes,
            )
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            raise IdentityProviderError("identity provider answer holds no access_token", code="malformed")
        expires_in = float(result.get("expires_in") or 600)  # MSAL's own default when absent
        refresh_on = result.get("refresh_on")
        refresh_in = float(refresh_on) - time.time() if isinstance(refresh_on, int | float) else None
        return AcquiredToken(value=token, expires_in=expires_in, refresh_in=refresh_in)


def _error_codes(result: dict[str, Any]) -> tuple[int, ...]:
    """Entra's AADSTS numbers (``error_codes``) of an error answer."""
    codes = result.get("error_codes")
    return tuple(c for c in codes if isinstance(c, int)) if isinstance(codes, list) else ()


def _connection_reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed", "timed out"):
        if marker in text:
            return marker
    return type(exc).__name__
