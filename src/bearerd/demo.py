"""``bearerd demo`` and ``bearerd emulator``: the whole product on one machine, no Microsoft needed.

The demo starts the Entra emulator, a sample backend behind an App Proxy emulator, writes a
real config file for them, loads it through the same path as ``bearerd run`` and runs the
daemon until Ctrl-C/SIGTERM. What it prints is meant to be copied: lines starting with ``curl``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bearerd.config.loader import load_config
from bearerd.daemon.daemon import Daemon
from bearerd.daemon.serve import serve
from bearerd.emulator import EmulatorStack

DEMO_ROUTE = "secretapi"


def _free_port(preferred: int) -> int:
    """The preferred port when it is free, else 0 (the kernel picks one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


def demo_config(stack: EmulatorStack, port: int) -> str:
    app = stack.apps[DEMO_ROUTE]
    return f"""# Written by `bearerd demo`: the daemon in front of the App Proxy emulator.
[server]
listen = ["127.0.0.1:{port}"]
admin = "127.0.0.1:0"
shutdown_timeout_s = 5

[credentials.demo-app]
kind = "client_secret"
authority = "{stack.authority}"
client_id = "{stack.secret_client_id}"
client_secret_file = "{stack.client_secret_file}"
ca_file = "{stack.ca_file}"

[routes.{DEMO_ROUTE}]
match = {{ path_prefix = "/{DEMO_ROUTE}/" }}
upstream = "{app.external_url}"
credential = "demo-app"
scopes = ["{app.scope}"]
"""


async def run_demo(port: int, workdir: Path | None) -> int:
    with ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bearerd-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        async with EmulatorStack(workdir / "emulator") as stack:
            config = workdir / "bearerd.toml"
            config.write_text(demo_config(stack, _free_port(port)))
            loaded = load_config(config)

            async def announce(daemon: Daemon, admin: tuple[str, int] | None) -> None:
                await daemon.wait_ready(within_s=10)
                host, bound = daemon.listeners.listen_addresses[0]
                base = f"http://{host}:{bound}/{DEMO_ROUTE}"
                app = stack.apps[DEMO_ROUTE]
                lines = [
                    "",
                    "bearerd demo is running — Ctrl-C stops it.",
                    f"  config:    {config}",
                    f"  Entra:     {stack.authority}  (emulator)",
                    f"  App Proxy: {app.external_url}  (emulator; verifies every token)",
                    "",
                    "Try, from another terminal:",
                    f"curl {base}/api/status",
                    f"curl '{base}/echo/hello?name=world'",
                    f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}\\n' --cacert {stack.ca_file} "
                    f"{app.external_url}api/status   # without bearerd: App Proxy sends you to sign-in",
                ]
                if admin is not None:
                    lines.append(f"curl http://{admin[0]}:{admin[1]}/readyz")
                print("\n".join(lines), flush=True)

            await serve(loaded, on_started=announce)
    return 0


async def run_emulator(workdir: Path | None) -> int:
    with ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bearerd-emulator-")))
        async with EmulatorStack(workdir) as stack:
            # Handlers first: whoever reads the banner may signal us at once.
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            app = stack.apps[DEMO_ROUTE]
            print(
                "\n".join(
                    [
                        "bearerd emulator is running — Ctrl-C stops it.",
                        f"  authority:           {stack.authority}",
                        f"  CA file:             {stack.ca_file}",
                        f"  secret client:       {stack.secret_client_id} (secret in {stack.client_secret_file})",
                        f"  certificate client:  {stack.cert_client_id} ({stack.cert_file}, {stack.key_file})",
                        f"  App Proxy app:       {app.external_url}  scope {app.scope}",
                        f"  backend (internal):  {stack.backend_url}",
                    ]
                ),
                flush=True,
            )
            await stop.wait()
    print("stopped", file=sys.stderr)
    return 0
