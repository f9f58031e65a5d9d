"""``bearerd`` command line: run, check, doctor, token, routes, login, ca, reload, demo, emulator.

Settings are loaded here, once, and passed down. Diagnostics go to stderr so that stdout stays
clean for what a script captures (``$(bearerd token secretapi)``). Exit codes: 0 success,
1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import structlog

from bearerd import __version__
from bearerd.config.loader import Config, load_config
from bearerd.daemon import eventloop
from bearerd.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, ProxyError
from bearerd.logs import configure_logging

log = structlog.get_logger("bearerd.cli")

DEFAULT_CONFIG = "/etc/bearerd/bearerd.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bearerd",
        description="Local daemon that adds Microsoft Entra access tokens to requests for Entra application proxy.",
    )
    parser.add_argument("--version", action="version", version=f"bearerd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")

    def with_logging(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-format", choices=("auto", "json", "console"), help="override [server] log_format")
        p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log_level")

    run = sub.add_parser("run", help="run the daemon")
    with_config(run)
    with_logging(run)

    check = sub.add_parser("check", help="validate the config (and with --acquire, fetch a token per route)")
    with_config(check)
    check.add_argument("--acquire", action="store_true", help="also acquire one token per route")

    doctor = sub.add_parser(
        "doctor", help="check each route end to end (config, identity provider, token, upstream) and say what fixes it"
    )
    with_config(doctor)
    doctor.add_argument("route", nargs="?", help="only this route (default: every route)")
    doctor.add_argument("--json", action="store_true", help="the report as JSON (for scripts)")

    token = sub.add_parser("token", help="print an access token for a route (for ad-hoc use)")
    with_config(token)
    token.add_argument("route", help="route name, as in [routes.NAME]")

    routes = sub.add_parser("routes", help="list routes: local entry -> upstream -> credential")
    with_config(routes)

    login = sub.add_parser("login", help="sign a user in for a device_code credential (once; the daemon refreshes)")
    with_config(login)
    login.add_argument("credential", help="credential name, as in [credentials.NAME]")
    login.add_argument(
        "--browser",
        action="store_true",
        help="sign in with a browser on this machine (localhost redirect) instead of a device code",
    )

    ca = sub.add_parser(
        "ca",
        help="bearerd's local CA (tls_listen, intercept_https): `export` it for clients to trust, `rotate` it for "
        "new hosts",
    )
    ca.add_argument("action", choices=("export", "rotate"))
    with_config(ca)
    ca.add_argument(
        "--format",
        choices=("pem", "jks"),
        default="pem",
        help="export as PEM (default) or as a Java truststore (PKCS#12, which Java reads as JKS too; no password)",
    )
    ca.add_argument("--out", type=Path, help="write the export to this file instead of stdout (required for jks)")

    reload = sub.add_parser("reload", help="make the running daemon re-read its config (via the admin listener)")
    with_config(reload)

    demo = sub.add_parser("demo", help="run a self-contained demo: Entra emulator + App Proxy emulator + daemon")
    demo.add_argument("--port", type=int, default=8080, help="preferred local port (a free one if taken)")
    demo.add_argument("--workdir", type=Path, help="where to write the demo's config and keys (default: temp dir)")
    with_logging(demo)

    emulator = sub.add_parser("emulator", help="run the Entra + App Proxy emulator alone")
    emulator.add_argument("--workdir", type=Path, help="where to write its CA and client credentials")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: str = args.command
    try:
        if command == "run":
            return _run(args)
        if command == "check":
            return _check(args)
        if command == "doctor":
            return _doctor(args)
        if command == "token":
            return _token(args)
        if command == "routes":
            return _routes(args)
        if command == "reload":
            return _reload(args)
        if command == "ca":
            return _ca(args)
        if command == "login":
            from bearerd.tokens.login import login

            config = _load(args.config, sys.stderr)
            configure_logging("auto", "error", stream=sys.stderr)
            return login(config, args.credential, browser=args.browser)
        if command == "demo":
            from bearerd.demo import run_demo

            # A newcomer watches it work: every request and token event, readable, in this terminal.
            configure_logging(args.log_format or "console", args.log_level or "info", stream=sys.stderr)
            return eventloop.run(run_demo(args.port, args.workdir))
        if command == "emulator":
            from bearerd.demo import run_emulator

            configure_logging("auto", "info", stream=sys.stderr)
            return asyncio.run(run_emulator(args.workdir))
    except ConfigError as exc:
        print(f"bearerd: {exc}", file=sys.stderr)
        print("bearerd: refusing to start; fix the settings above and run `bearerd check -c FILE`", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE  # pragma: no cover - argparse enforces the command


def _load(path: str, stream: TextIO) -> Config:
    config = load_config(path)
    for warning in config.warnings:
        print(f"bearerd: warning: {warning}", file=stream)
    return config


def _run(args: argparse.Namespace) -> int:
    from bearerd.daemon.serve import serve

    config = load_config(args.config)
    server = config.settings.server
    configure_logging(
        args.log_format or server.log_format, args.log_level or server.log_level, secrets=config.secrets.values()
    )
    for warning in config.warnings:
        log.warning("config.warning", message=warning)
    try:
        eventloop.run(serve(config, load=lambda: load_config(args.config)))
    except OSError as exc:
        log.error("startup_failed", error=str(exc))
        print(f"bearerd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except asyncio.CancelledError:
        return 130
    return EXIT_OK


def _ca(args: argparse.Namespace) -> int:
    from bearerd.proxy import localca  # cryptography: only for the CA commands

    config = _load(args.config, sys.stderr)
    directory, names = config.state_dir / "tls", localca.required_names(config.settings)
    if args.action == "rotate":
        ca = localca.LocalCA.rotate(directory, names)
        print(f"bearerd: new local CA {ca.cert_file} (key {ca.key_file}, mode 0600) for: {', '.join(names)}")
        print("bearerd: restart the daemon, then have clients trust the new CA: bearerd ca export -c FILE")
        return EXIT_OK
    ca = localca.LocalCA(directory, names)
    missing = ca.not_covered(names)
    if missing:
        print(f"bearerd: warning: the local CA may not sign for {', '.join(missing)}: run `bearerd ca rotate`",
              file=sys.stderr)  # fmt: skip
    if args.format == "jks":
        if args.out is None:
            print("bearerd: --format jks needs --out FILE", file=sys.stderr)
            return EXIT_USAGE
        args.out.write_bytes(ca.java_truststore())
        print(f"bearerd: wrote {args.out}: java -Djavax.net.ssl.trustStore={args.out} …", file=sys.stderr)
        return EXIT_OK
    if args.out is not None:
        args.out.write_bytes(ca.cert_pem())
    else:
        sys.stdout.write(ca.cert_pem().decode())
    return EXIT_OK


def route_rows(config: Config) -> list[tuple[str, str, str, str]]:
    from bearerd.proxy.routes import describe_entry

    settings = config.settings
    return [(name, describe_entry(settings, name), r.upstream, r.credential) for name, r in settings.routes.items()]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _routes(args: argparse.Namespace) -> int:
    config = _load(args.config, sys.stderr)
    print(_table(("ROUTE", "LOCAL ENTRY", "UPSTREAM", "CREDENTIAL"), route_rows(config)))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config, sys.stderr)
    settings = config.settings
    print(f"{args.config}: OK — {len(settings.routes)} route(s), {len(settings.credentials)} credential(s)")
    print(_table(("ROUTE", "LOCAL ENTRY", "UPSTREAM", "CREDENTIAL"), route_rows(config)))
    for name, choice in config.identities.items():
        print(f"[credentials.{name}] {choice.describe()}")
        for candidate, why in choice.skipped:
            print(f"  not {candidate}: {why}")
    if not args.acquire:
        return EXIT_OK
    configure_logging("auto", "error", stream=sys.stderr, secrets=config.secrets.values())
    results = asyncio.run(_acquire_all(config, list(settings.routes)))
    rows = []
    for name, (token, error) in results.items():
        credential = settings.routes[name].credential
        chosen = config.identities.get(credential)
        kind = chosen.describe() if chosen is not None else settings.credentials[credential].kind
        if token is None:
            rows.append((name, kind, "-", "-", f"FAILED: {error}"))
            continue
        import jwt  # only here: PyJWT pulls in cryptography, which the daemon needn't carry

        claims = jwt.decode(token, options={"verify_signature": False})
        expires = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(claims.get("exp", 0))))
        rows.append((name, kind, str(claims.get("aud", "?")), expires, "OK"))
    print()
    print(_table(("ROUTE", "KIND", "AUDIENCE", "EXPIRES", "RESULT"), rows))
    return EXIT_OK if all(t is not None for t, _ in results.values()) else EXIT_FAILED


async def _acquire_all(config: Config, names: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """One token per route through the same providers the daemon uses (no listeners started).

    A failure is said as what failed and its fix: this command asks once and exits, so the
    daemon's "retrying in N s" would promise a retry nobody makes.
    """
    from bearerd.tokens.advice import fix_for
    from bearerd.tokens.registry import Providers

    providers = Providers(config)
    out: dict[str, tuple[str | None, str | None]] = {}
    try:
        for name in names:
            provider = providers.for_route(name)
            try:
                out[name] = (await provider.fetch(), None)
            except ProxyError as exc:
                error = provider.last_error
                if error is None:
                    out[name] = (None, exc.detail)
                else:
                    fix = fix_for(error, provider.credential)
                    out[name] = (None, f"{error} — fix: {fix}" if fix is not None else str(error))
    finally:
        await providers.aclose()
    return out


def _doctor(args: argparse.Namespace) -> int:
    from bearerd import doctor

    try:
        config = _load(args.config, sys.stderr)
    except ConfigError as exc:
        if args.json:
            sys.stdout.write(doctor.render_json(args.config, doctor.config_failure(args.config, exc.problems)))
        raise
    routes = list(config.settings.routes)
    if args.route is not None:
        if args.route not in config.settings.routes:
            print(f"bearerd: no route {args.route!r} in {args.config} (routes: {', '.join(routes)})", file=sys.stderr)
            return EXIT_USAGE
        routes = [args.route]
    configure_logging("auto", "error", stream=sys.stderr, secrets=config.secrets.values())
    reports = asyncio.run(doctor.diagnose(config, routes))
    render = doctor.render_json if args.json else doctor.render_text
    sys.stdout.write(render(args.config, reports))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def _reload(args: argparse.Namespace) -> int:
    """Ask the daemon to reload; it validates the file itself and keeps its config if invalid."""
    import json
    import urllib.error
    import urllib.request

    admin = _load(args.config, sys.stderr).settings.server.admin
    if not admin:
        print("bearerd: [server] admin is disabled; send SIGHUP to the daemon instead", file=sys.stderr)
        return EXIT_USAGE
    url = f"http://{admin}/-/reload"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
    except OSError as exc:
        print(f"bearerd: cannot reach the daemon's admin listener at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"reloaded: {body.get('message')}" if body.get("reloaded") else f"bearerd: reload rejected: {body}")
    return EXIT_OK if body.get("reloaded") else EXIT_FAILED


def _token(args: argparse.Namespace) -> int:
    config = _load(args.config, sys.stderr)
    if args.route not in config.settings.routes:
        known = ", ".join(sorted(config.settings.routes))
        print(f"bearerd: no route {args.route!r} in {args.config} (routes: {known})", file=sys.stderr)
        return EXIT_USAGE
    configure_logging("auto", "error", stream=sys.stderr, secrets=config.secrets.values())
    token, error = asyncio.run(_acquire_all(config, [args.route]))[args.route]
    if token is None:
        print(f"bearerd: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(token)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
