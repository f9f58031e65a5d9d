"""Real tools as a user runs them: a subprocess with its output, and the small programs tests give them."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

# A Java program that fetches one URL the way legacy Java code does (HttpURLConnection).
JAVA_FETCH = """
import java.net.*;
import java.io.*;
public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(args[0]).openConnection();
        System.out.println(c.getResponseCode());
        try (InputStream in = c.getInputStream()) { System.out.println(new String(in.readAllBytes())); }
    }
}
"""


async def run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run to completion (bounded): the exit status and stdout + stderr."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def tool(name: str) -> str:
    """The tool's path, or skip the test where it isn't installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"no {name} on this machine")
    return path
