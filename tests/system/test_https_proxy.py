"""Tools with a hard-coded https URL, pointed at bearerd only by their proxy setting, each trusting the
local CA the way the README's table says — curl, Python requests, Node, Java, git — through bearerd
(intercept_https) to the App Proxy emulator, which verifies the token. And the CA's name constraints
as ``openssl verify`` sees them.

The emulator's apps live on 127.0.0.1; the secretapi route names its app ``https://localhost:PORT/``
(the same app, reached by a host name) so that the clients send SNI and bearerd checks it, while
otherapi keeps its ``https://127.0.0.1:PORT/`` URL (no SNI for an IP address): both forms are covered.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from bearerd.proxy.localca import LocalCA
from support.certs import forged_leaf
from support.configs import intercept_tables, local_ca_file, write_intercept_config
from support.inprocess import Running, start
from support.processes import daemon_process, run_cli
from support.tools import JAVA_FETCH, run, tool

_NODE = """
// Node's own https doesn't read HTTPS_PROXY (before NODE_USE_ENV_PROXY): CONNECT, then TLS on that
// socket, which is what proxy agents (https-proxy-agent, global-agent) do for a tool.
const http = require('http'), https = require('https'), net = require('net'), tls = require('tls');
const proxy = new URL(process.env.HTTPS_PROXY), target = new URL(process.argv[2]);
const authority = `${target.hostname}:${target.port || 443}`;
http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: authority, headers: {Host: authority}})
  .on('connect', (res, socket) => {
    if (res.statusCode !== 200) { console.log('CONNECT ' + res.statusCode); process.exit(1); }
    https.get({host: target.hostname, port: target.port, path: target.pathname + target.search,
               createConnection: () => tls.connect({socket, host: target.hostname,
                 servername: net.isIP(target.hostname) ? undefined : target.hostname})}, (r) => {
      let body = ''; r.on('data', (d) => body += d);
      r.on('end', () => { console.log(r.statusCode); console.log(body); socket.destroy(); });
    }).on('error', (e) => { console.log('ERROR ' + (e.code || '') + ' ' + e.message); process.exit(2); });
  }).on('error', (e) => { console.log('PROXY ' + e.message); process.exit(3); }).end();
"""


def app_url(stack: EmulatorStack, app: str, path: str) -> str:
    url = stack.apps[app].external_url.rstrip("/") + path
    return url.replace("127.0.0.1", "localhost") if app == "secretapi" else url


# Inherited settings that would decide the trust or the proxy instead of the one line a test names (a
# machine may set GIT_SSL_CAINFO, which beats git's http.sslCAInfo, or CURL_CA_BUNDLE for everyone).
_INHERITED = frozenset({"no_proxy", "http_proxy", "https_proxy", "all_proxy", "git_ssl_cainfo", "git_ssl_capath",
                        "curl_ca_bundle", "requests_ca_bundle", "node_extra_ca_certs", "ssl_cert_file"})  # fmt: skip


def tool_env(running: Running | None = None, **extra: str) -> dict[str, str]:
    """The user's environment, with bearerd as the https proxy, and no inherited proxy or trust setting."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _INHERITED}
    return {**env, **({"HTTPS_PROXY": running.base} if running is not None else {}), **extra}


@pytest.fixture
async def intercepting(stack: EmulatorStack, tmp_path: Path) -> AsyncIterator[Running]:
    config = write_intercept_config(stack, tmp_path, intercept_tables(stack, by_name=True))
    async with start(load_config(config)) as running:
        yield running


def reached(stack: EmulatorStack, app: str, agent: str) -> None:
    """The app got the tool's request (User-Agent) with a token the emulator verified, for that app."""
    seen = [r for r in stack.apps[app].requests_seen if agent in dict(r.headers).get("User-Agent", "")]
    assert seen, f"no request from {agent} reached {app}"
    client = stack.secret_client_id if app == "secretapi" else stack.cert_client_id
    assert all(r.claims["appid"] == client and r.claims["aud"] == stack.apps[app].app_id_uri for r in seen)


async def test_curl_with_cacert_and_curl_ca_bundle(intercepting: Running, stack: EmulatorStack, tmp_path: Path) -> None:
    curl, ca = tool("curl"), str(local_ca_file(tmp_path))
    code, out = await run(curl, "-sS", "--cacert", ca, app_url(stack, "secretapi", "/api/status"),
                          env=tool_env(intercepting))  # fmt: skip
    assert code == 0 and '"service": "secretapi"' in out, out
    code, out = await run(curl, "-sS", "-w", "\n%{http_code}", app_url(stack, "otherapi", "/echo/x?y=1"),
                          env=tool_env(intercepting, CURL_CA_BUNDLE=ca))  # fmt: skip
    assert code == 0 and out.endswith("\n200") and '"raw_path": "/echo/x?y=1"' in out, out
    reached(stack, "secretapi", "curl/")
    reached(stack, "otherapi", "curl/")


async def test_curl_without_trusting_the_ca_fails_and_says_so(
    intercepting: Running, stack: EmulatorStack, tmp_path: Path
) -> None:
    code, out = await run(tool("curl"), "-sS", app_url(stack, "secretapi", "/api/status"), env=tool_env(intercepting))
    assert code == 60, out  # CURLE_PEER_FAILED_VERIFICATION: nothing was sent inside
    assert not [r for r in stack.apps["secretapi"].requests_seen if "curl/" in dict(r.headers).get("User-Agent", "")]


async def test_python_requests_with_requests_ca_bundle(
    intercepting: Running, stack: EmulatorStack, tmp_path: Path
) -> None:
    script = "import requests, sys; r = requests.get(sys.argv[1], timeout=30); print(r.status_code); print(r.text)"
    env = tool_env(intercepting, REQUESTS_CA_BUNDLE=str(local_ca_file(tmp_path)))
    for app in ("secretapi", "otherapi"):
        code, out = await run(sys.executable, "-c", script, app_url(stack, app, "/api/status"), env=env)
        assert code == 0 and out.splitlines()[0] == "200", out
        reached(stack, app, "python-requests/")


async def test_openssl_based_clients_with_ssl_cert_file(
    intercepting: Running, stack: EmulatorStack, tmp_path: Path
) -> None:
    """OpenSSL's own default trust (what .NET on Linux and many tools fall back to): Python's urllib here."""
    script = "import sys, urllib.request as u; r = u.urlopen(sys.argv[1], timeout=30); print(r.status); print(r.read())"
    env = tool_env(intercepting, SSL_CERT_FILE=str(local_ca_file(tmp_path)))
    code, out = await run(sys.executable, "-c", script, app_url(stack, "secretapi", "/echo/urllib"), env=env)
    assert code == 0 and out.splitlines()[0] == "200", out
    reached(stack, "secretapi", "Python-urllib/")


async def test_node_with_node_extra_ca_certs(intercepting: Running, stack: EmulatorStack, tmp_path: Path) -> None:
    node = tool("node")
    (tmp_path / "fetch.js").write_text(_NODE)
    env = tool_env(intercepting, NODE_EXTRA_CA_CERTS=str(local_ca_file(tmp_path)))
    for app in ("secretapi", "otherapi"):
        code, out = await run(node, str(tmp_path / "fetch.js"), app_url(stack, app, "/echo/node"), env=env)
        assert code == 0 and out.splitlines()[0] == "200", out
        assert '"raw_path": "/echo/node"' in out
    assert len([r for r in stack.apps["secretapi"].requests_seen if r.raw_path == "/echo/node"]) == 1
    code, out = await run(node, str(tmp_path / "fetch.js"), app_url(stack, "secretapi", "/echo/node"),
                          env=tool_env(intercepting))  # fmt: skip
    assert code == 2 and "ERROR" in out, out  # without NODE_EXTRA_CA_CERTS Node refuses the certificate


async def test_java_with_an_exported_truststore_and_https_proxy_properties(
    intercepting: Running, stack: EmulatorStack, tmp_path: Path
) -> None:
    java = tool("java")
    store = tmp_path / "bearerd-ca.jks"
    code, _, err = await run_cli("ca", "export", "-c", str(tmp_path / "bearerd.toml"), "--format", "jks",
                                 "--out", str(store))  # fmt: skip
    assert code == 0, err
    (tmp_path / "Fetch.java").write_text(JAVA_FETCH)
    port = intercepting.address[1]
    # The file is PKCS#12 with Java's trusted-certificate attribute: Java's default keystore type, and its JKS type.
    for app, store_type in (("secretapi", []), ("otherapi", ["-Djavax.net.ssl.trustStoreType=JKS"])):
        code, out = await run(
            java,
            f"-Djavax.net.ssl.trustStore={store}",
            *store_type,
            "-Dhttps.proxyHost=127.0.0.1",
            f"-Dhttps.proxyPort={port}",
            "-Dhttp.nonProxyHosts=",  # the emulated apps live on localhost, which Java would not proxy by default
            "Fetch.java",
            app_url(stack, app, "/api/status"),
            cwd=tmp_path,
            env=tool_env(),
        )
        assert code == 0 and out.splitlines()[0] == "200", out
        reached(stack, app, "Java")


async def test_git_with_ssl_cainfo_and_http_proxy(intercepting: Running, stack: EmulatorStack, tmp_path: Path) -> None:
    git = tool("git")
    ca, proxy = str(local_ca_file(tmp_path)), intercepting.base
    # The sample backend is no git server: what counts is that git's request arrived with a token.
    _, out = await run(git, "-c", f"http.proxy={proxy}", "-c", f"http.sslCAInfo={ca}", "ls-remote",
                       app_url(stack, "secretapi", "/echo/repo.git"), env=tool_env(intercepting))  # fmt: skip
    seen = [r for r in stack.apps["secretapi"].requests_seen if r.raw_path.startswith("/echo/repo.git/")]
    assert seen and seen[0].raw_path == "/echo/repo.git/info/refs?service=git-upload-pack", out
    reached(stack, "secretapi", "git/")


async def test_curl_through_the_daemon_process(stack: EmulatorStack, tmp_path: Path) -> None:
    """The same through `bearerd run` (on uvloop when installed, as in the container image)."""
    curl = tool("curl")
    tables = intercept_tables(stack, by_name=True)
    async with daemon_process(tmp_path / "run.toml", tables, env={"STATE_DIRECTORY": str(tmp_path / "state")}) as d:
        env = tool_env(HTTPS_PROXY=d.base)
        for app in ("secretapi", "otherapi"):
            code, out = await run(curl, "-sS", "--cacert", str(local_ca_file(tmp_path)),
                                  app_url(stack, app, "/api/status"), env=env)  # fmt: skip
            assert code == 0 and '"status": "ok"' in out, out
        await d.wait_for_output(b'"via": "connect"', within_s=10)
    reached(stack, "secretapi", "curl/")


async def test_openssl_verify_accepts_a_permitted_leaf_and_refuses_a_forbidden_one(tmp_path: Path) -> None:
    openssl = tool("openssl")
    ca = LocalCA(tmp_path / "tls", ["secretapi-contoso.msappproxy.net"])
    chain, _ = ca.leaf(("secretapi-contoso.msappproxy.net",))
    (tmp_path / "permitted.pem").write_bytes(
        chain.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    )
    forged = forged_leaf(tmp_path / "tls", "login.microsoftonline.com")  # signed with the CA's own key
    (tmp_path / "forbidden.pem").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    cafile = str(ca.cert_file)
    code, out = await run(
        openssl, "verify", "-CAfile", cafile, "-purpose", "sslserver", str(tmp_path / "permitted.pem")
    )
    assert code == 0 and out.strip().endswith(": OK"), out
    code, out = await run(openssl, "verify", "-CAfile", cafile, str(tmp_path / "forbidden.pem"))
    assert code != 0 and "permitted subtree violation" in out, out
