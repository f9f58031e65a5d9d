"""Tokens from a developer's own sign-in: ``az account get-access-token`` and ``azd auth token``.

A ``TokenSource`` like ``LocalSource``, with the CLI in MSAL's place: the tool runs without a
shell (arguments as a list; nothing from a request can reach it), from ``/`` rather than
whatever directory bearerd was started in, with no standard input and a timeout after which it
is killed. Its answer is parsed here (az: ``accessToken`` and ``expires_on``, or the older
local-time ``expiresOn``; azd: ``token`` and an RFC 3339 ``expiresOn``) and its failures are
translated into bearerd's vocabulary: "Please run 'az login'" is a sign-in the user must do
(503 ``login-required`` naming the command), AADSTS65001 means the App Proxy app does not list
the CLI as an authorized client (the README says how to add it). Nothing the CLI prints reaches
a log line unless it is a known error's first line, with any token in it cut out.

``TokenProvider`` keeps the token in memory and refreshes it early, as for every kind; the CLI
keeps its own cache, so an early refresh may return the same token until the CLI renews it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import re
import time
from dataclasses import dataclass

from bearerd.config.schema import AzureCliCredential, CliCredential
from bearerd.errors import first_line
from bearerd.tokens.results import AcquiredToken, IdentityProviderError, SignInRequired
from bearerd.tokens.sources import Origin

AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
# How often a credential waiting for `az login` runs the CLI again (it answers locally, fast).
LOGIN_RECHECK_S = 5.0
CONSENT_NOTE = (
    "the App Proxy app does not list the Azure CLI as an authorized client application: on its app "
    f"registration, Expose an API → Add a client application → {AZURE_CLI_CLIENT_ID} "
    "(README: 'Developers signed in with the Azure CLI')"
)
_TOKENISH = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


@dataclass(frozen=True, slots=True)
class CliTool:
    """What differs between az and azd: the command line, the login command, the answer's field names."""

    name: str
    login: str

    def arguments(self, scopes: tuple[str, ...], tenant: str | None) -> list[str]:
        if self.name == "az":
            args = ["account", "get-access-token", "--output", "json", "--scope", scopes[0]]
            return args + (["--tenant", tenant] if tenant else [])
        args = ["auth", "token", "--output", "json", "--no-prompt"]
        for scope in scopes:
            args += ["--scope", scope]
        return args + (["--tenant-id", tenant] if tenant else [])


AZ = CliTool("az", "az login")
AZD = CliTool("azd", "azd auth login")


def tool_for(cred: CliCredential) -> CliTool:
    return AZ if isinstance(cred, AzureCliCredential) else AZD


def scrub(text: str) -> str:
    """CLI output safe to show: the first line, any JWT-shaped string replaced."""
    return first_line(_TOKENISH.sub("****", text).removeprefix("ERROR: "), 300)


def parse_answer(tool: CliTool, stdout: bytes, now: float) -> AcquiredToken:
    """The token and its lifetime from the CLI's JSON answer; ``IdentityProviderError`` when it holds none."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        raise IdentityProviderError(f"{tool.name} printed something that is not JSON", code="malformed") from None
    if not isinstance(answer, dict):
        raise IdentityProviderError(f"{tool.name} printed JSON without a token", code="malformed")
    value = answer.get("accessToken" if tool is AZ else "token")
    if not isinstance(value, str) or not value:
        raise IdentityProviderError(f"{tool.name}'s answer holds no token", code="malformed")
    expires_on = expiry(answer)
    if expires_on is None:
        raise IdentityProviderError(f"{tool.name}'s answer says no expiry (expires_on/expiresOn)", code="malformed")
    return AcquiredToken(value=value, expires_in=expires_on - now, refresh_in=None)


def expiry(answer: dict[str, object]) -> float | None:
    """Epoch seconds: az's ``expires_on`` (2.54+: epoch, an int or a numeric string), else ``expiresOn`` —
    az's local time ``2023-10-31 21:59:10.000000`` or azd's RFC 3339 ``2023-10-31T21:59:10Z``."""
    epoch = answer.get("expires_on")
    if isinstance(epoch, int | float) or (isinstance(epoch, str) and epoch.strip().isdigit()):
        return float(epoch)
    text = answer.get("expiresOn")
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    # A naive value is the local time of the machine az ran on (this one): .timestamp() reads it so.
    return parsed.timestamp()


def failure(tool: CliTool, code: int | None, stderr: bytes) -> IdentityProviderError:
    """What a CLI's non-zero exit means, from what it printed (the real CLIs' own words)."""
    text = stderr.decode("utf-8", "replace")
    if "AADSTS65001" in text:
        return IdentityProviderError(
            f"{tool.name}: AADSTS65001 consent_required — {CONSENT_NOTE}", code="consent_required", permanent=True
        )
    if tool is AZ and ("az login" in text or "az account set" in text):
        return SignInRequired(
            f"the Azure CLI has no signed-in account ({scrub(text)}); run: az login",
            code="login_required",
            retry_after=LOGIN_RECHECK_S,
        )
    if tool is AZD and ("not logged in" in text.lower() or "login expired" in text.lower()):
        return SignInRequired(
            f"the Azure Developer CLI has no signed-in account ({scrub(text)}); run: azd auth login",
            code="login_required",
            retry_after=LOGIN_RECHECK_S,
        )
    return IdentityProviderError(f"{tool.name} failed (exit {code}): {scrub(text) or 'no message'}", code="cli_failed")


class CliSource:
    """A token from the developer's CLI sign-in, for one (credential, scopes)."""

    def __init__(self, cred: CliCredential, scopes: tuple[str, ...]) -> None:
        self.tool = tool_for(cred)
        self.command = cred.command  # an absolute path: the loader looked it up on PATH
        self.arguments = self.tool.arguments(scopes, cred.tenant_id)
        self.timeout_s = cred.timeout_s
        self.runs = 0  # CLI invocations (tests, logs)

    async def acquire(self, claims: str | None, avoid: str | None) -> tuple[AcquiredToken, Origin]:
        # ``claims``: the CLIs take no claims challenge on this command; the retry flow then gives up cleanly.
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command,
                *self.arguments,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd="/",
            )
        except OSError as exc:
            raise IdentityProviderError(
                f"cannot run {self.command}: {exc.strerror or type(exc).__name__}", code="cli_missing"
            ) from None
        try:
            async with asyncio.timeout(self.timeout_s):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            await _kill(proc)
            raise IdentityProviderError(
                f"{self.tool.name} did not answer within {self.timeout_s:g} s (timeout_s)", code="timeout"
            ) from None
        except BaseException:  # cancelled (shutdown): never leave the CLI running behind us
            await _kill(proc)
            raise
        if proc.returncode != 0:
            raise failure(self.tool, proc.returncode, stderr)
        return parse_answer(self.tool, stdout, time.time()), "local"

    def stamp(self) -> object:
        """No file of ours changes the answer: the CLI keeps its own sign-in (a new `az login` there
        is noticed at the next acquisition, which a login-required refusal retries soon)."""
        return None

    async def forget_failures(self) -> None:
        return None  # nothing shared (CLI tokens never go through a fleet)

    async def failure_lifted(self) -> bool:
        return False


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
