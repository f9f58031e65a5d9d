"""The one line each legacy tool changes, exercised with the real tool (Java, git)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bearerd.emulator import EmulatorStack
from support.inprocess import Running
from support.tools import JAVA_FETCH, run


def app_http_url(stack: EmulatorStack, path: str) -> str:
    return stack.apps["secretapi"].external_url.replace("https://", "http://").rstrip("/") + path


async def test_java_with_http_proxy_properties(running: Running, stack: EmulatorStack, tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no Java runtime on this machine")
    (tmp_path / "Fetch.java").write_text(JAVA_FETCH)
    port = running.daemon.listeners.listen_addresses[0][1]
    code, out = await run(
        java,
        "-Dhttp.proxyHost=127.0.0.1",
        f"-Dhttp.proxyPort={port}",
        "-Dhttp.nonProxyHosts=",  # the emulated app lives on 127.0.0.1, which Java would not proxy by default
        "Fetch.java",
        app_http_url(stack, "/api/status"),
        cwd=tmp_path,
    )
    assert code == 0, out
    assert out.splitlines()[0] == "200" and '"service": "secretapi"' in out
    assert "Java" in dict(stack.apps["secretapi"].requests_seen[-1].headers).get("User-Agent", "")


async def test_git_with_http_proxy(running: Running, stack: EmulatorStack, tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("no git on this machine")
    port = running.daemon.listeners.listen_addresses[0][1]
    # The sample backend is no git server: what counts is that git's request arrived with a token.
    await run(git, "-c", f"http.proxy=http://127.0.0.1:{port}", "ls-remote", app_http_url(stack, "/echo/repo.git"))
    seen = [r for r in stack.apps["secretapi"].requests_seen if r.raw_path.startswith("/echo/repo.git/")]
    assert seen[0].raw_path == "/echo/repo.git/info/refs?service=git-upload-pack"
    assert dict(seen[0].headers).get("User-Agent", "").startswith("git/")
    assert all(r.claims["appid"] == stack.secret_client_id for r in seen)
