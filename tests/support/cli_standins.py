"""Stand-in ``az`` and ``azd`` executables on a PATH of the test's own, backed by the emulator.

They take the real CLIs' arguments (``az account get-access-token --output json --scope S
[--tenant T]``, ``azd auth token --output json --no-prompt --scope S [--tenant-id T]``), get a
real token from the Entra emulator (as the Azure CLI's client ID), and answer in the real CLIs'
JSON. Signed out, they print what the real ones print ("Please run 'az login' to setup
account.", "not logged in, run `azd auth login` to login"); an AADSTS65001 from the emulator is
printed the way az prints it. Every run is counted in ``state/runs``.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from bearerd.emulator import EmulatorStack
from bearerd.emulator.stack import AZURE_CLI_CLIENT_ID

_SCRIPT = r"""#!{python}
import datetime, json, os, sys, time
from pathlib import Path

import requests

TOOL = {tool!r}
state = Path(__file__).resolve().parent / "state"
settings = json.loads((state / "settings.json").read_text())
with open(state / "runs", "a") as runs:
    runs.write(" ".join(sys.argv[1:]) + "\n")
if (state / "hang").exists():
    time.sleep(120)
args = sys.argv[1:]
expected = ["account", "get-access-token"] if TOOL == "az" else ["auth", "token"]
if args[:2] != expected or "--scope" not in args:
    print(f"ERROR: {{TOOL}}: unexpected arguments {{args}}", file=sys.stderr)
    sys.exit(2)
scope = args[args.index("--scope") + 1]
if not (state / "logged-in").exists():
    if TOOL == "az":
        print("ERROR: Please run 'az login' to setup account.", file=sys.stderr)
    else:
        print("\nERROR: not logged in, run `azd auth login` to login", file=sys.stderr)
    sys.exit(1)
resp = requests.post(
    settings["token_endpoint"],
    data={{
        "grant_type": "client_credentials",
        "client_id": settings["client_id"],
        "client_secret": Path(settings["secret_file"]).read_text().strip(),
        "scope": scope,
    }},
    verify=settings["ca_file"],
    timeout=10,
)
body = resp.json()
if resp.status_code != 200:
    description = body.get("error_description", "").replace("\r\n", "\n")
    if TOOL == "az":
        print(f"ERROR: {{description}}", file=sys.stderr)
        if "AADSTS65001" in description:
            print(f"Timestamp: {{body.get('timestamp')}}", file=sys.stderr)
            print(f"Interactive authentication is needed. Please run:\naz login --scope {{scope}}", file=sys.stderr)
    else:
        print(f"\nERROR: fetching token: {{description}}", file=sys.stderr)
    sys.exit(1)
expires_on = int(time.time()) + int(body["expires_in"])
if TOOL == "az":
    answer = {{
        "accessToken": body["access_token"],
        "expiresOn": datetime.datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": expires_on,
        "subscription": "0b5e0000-0000-4000-8000-00000000501b",
        "tenant": settings["tenant"],
        "tokenType": "Bearer",
    }}
else:
    answer = {{
        "token": body["access_token"],
        "expiresOn": datetime.datetime.fromtimestamp(expires_on, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }}
print(json.dumps(answer, indent=2))
"""


@dataclass
class StandIns:
    bin: Path
    state: Path

    @property
    def path(self) -> str:
        """A PATH holding only the stand-ins (and what runs them: the venv's python is named absolutely)."""
        return str(self.bin)

    def log_in(self) -> None:
        (self.state / "logged-in").touch()

    def log_out(self) -> None:
        (self.state / "logged-in").unlink(missing_ok=True)

    def hang(self) -> None:
        (self.state / "hang").touch()

    def runs(self) -> list[str]:
        path = self.state / "runs"
        return path.read_text().splitlines() if path.exists() else []


def install(stack: EmulatorStack, directory: Path, logged_in: bool = True) -> StandIns:
    """Write ``az`` and ``azd`` into ``directory/bin`` (signed in unless told otherwise)."""
    bin_dir = directory / "bin"
    state = bin_dir / "state"
    state.mkdir(parents=True, exist_ok=True)
    settings = {
        "token_endpoint": f"{stack.authority}/oauth2/v2.0/token",
        "client_id": AZURE_CLI_CLIENT_ID,
        "secret_file": str(stack.azure_cli_secret_file),
        "ca_file": str(stack.ca_file),
        "tenant": stack.tenant_id,
    }
    (state / "settings.json").write_text(json.dumps(settings))
    for tool in ("az", "azd"):
        script = bin_dir / tool
        script.write_text(_SCRIPT.format(python=sys.executable, tool=tool))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    standins = StandIns(bin_dir, state)
    if logged_in:
        standins.log_in()
    return standins
