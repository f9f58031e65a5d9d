"""Browser-facing details: CORS preflights answered by bearerd; App Proxy's cookies kept inside it."""

from __future__ import annotations

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter
from support.inprocess import Running, start

ORIGIN = "http://localhost:3000"


async def test_cors_preflight_answered_locally(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    settings = load_config(write_config(cors_origins=[ORIGIN]))
    async with start(settings) as running:
        seen = len(stack.apps["secretapi"].requests_seen)
        preflight = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type, x-trace",
        }
        async with running.session.options(running.url("/secretapi/upload"), headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert resp.headers["Access-Control-Allow-Methods"] == "PUT"
            assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-trace"
        assert len(stack.apps["secretapi"].requests_seen) == seen  # never reached App Proxy
        async with running.session.get(running.url("/secretapi/api/status"), headers={"Origin": ORIGIN}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        bad = {**preflight, "Origin": "http://evil.example"}
        async with running.session.options(running.url("/secretapi/upload"), headers=bad) as resp:
            assert resp.status == 403
            assert (await resp.json())["type"] == "urn:bearerd:problem:cors-origin-not-allowed"


async def test_cors_off_by_default_forwards_options(running: Running, stack: EmulatorStack) -> None:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    async with running.session.options(running.url("/secretapi/echo/x"), headers=headers) as resp:
        assert resp.status == 200  # the backend's own answer
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_app_proxy_cookies_stay_inside_backend_cookies_pass(running: Running, stack: EmulatorStack) -> None:
    app = stack.apps["secretapi"]
    async with running.session.get(running.url("/secretapi/api/status")) as resp:
        assert resp.status == 200
        assert not any("AzureAppProxy" in v for v in resp.headers.getall("Set-Cookie", ()))
    forged = {"Cookie": f"{app.session_cookie}=forged; theme=dark"}
    async with running.session.get(running.url("/secretapi/set-cookie"), headers=forged) as resp:
        body = await resp.json()
        cookies = resp.headers.getall("Set-Cookie")
    # bearerd sent App Proxy's cookie from its jar (not the client's forged one); the backend got only its own.
    assert app.cookies_seen[-1] == "s1"
    assert body["cookies"] == {"theme": "dark"}
    assert cookies == ["session=abc123; Path=/secretapi/app; HttpOnly"]
