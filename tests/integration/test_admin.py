"""Admin listener: metrics families and labels, readiness details, access-log modes."""

from __future__ import annotations

import io
import re

from bearerd.config.loader import load_config
from bearerd.emulator import EmulatorStack
from support.configs import ConfigWriter
from support.inprocess import Running, start
from support.wire import log_events


async def test_metrics_after_traffic(running: Running, stack: EmulatorStack) -> None:
    assert await running.daemon.wait_ready(within_s=5)
    for target in ("/secretapi/api/status", "/secretapi/echo/secret-path-segment?q=1", "/nope/x"):
        async with running.session.get(running.url(target)) as resp:
            await resp.read()
    async with running.session.get(running.admin + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'bearerd_requests_total{method="GET",route="secretapi",status_class="2xx"} 2.0' in text
    assert 'bearerd_requests_total{method="GET",route="(none)",status_class="4xx"} 1.0' in text
    assert 'bearerd_request_duration_seconds_count{route="secretapi"} 2.0' in text
    assert 'bearerd_upstream_duration_seconds_count{route="secretapi"} 2.0' in text
    assert 'bearerd_token_acquisitions_total{credential="emu-secret",outcome="success"} 1.0' in text
    assert 'bearerd_identity_provider_duration_seconds_count{credential="emu-secret"}' in text
    assert re.search(r'bearerd_token_expires_in_seconds\{credential="emu-secret",route="secretapi"\} 3[0-9]{3}', text)
    assert "bearerd_requests_in_flight" in text
    assert re.search(r'bearerd_response_body_bytes_total\{route="secretapi"\} [1-9]', text)
    # Nothing a client controls ends up in a label.
    assert "secret-path-segment" not in text and "/nope" not in text
    for token in stack.entra.issued_tokens:
        assert token not in text


async def test_token_failures_are_counted_by_outcome(stack: EmulatorStack, write_config: ConfigWriter) -> None:
    from bearerd.emulator import Fault

    stack.entra.faults.set(Fault(status=400))
    settings = load_config(write_config())
    async with start(settings) as running:
        async with running.session.get(running.url("/secretapi/api/status")) as resp:
            assert resp.status == 503
        async with running.session.get(running.admin + "/metrics") as resp:
            text = await resp.text()
    assert 'bearerd_token_acquisitions_total{credential="emu-secret",outcome="server_error"}' in text


async def test_access_log_errors_only_and_off(
    stack: EmulatorStack, write_config: ConfigWriter, log_stream: io.StringIO
) -> None:
    tables_path = write_config(access_log="errors")
    settings = load_config(tables_path)
    async with start(settings) as running:
        for target in ("/secretapi/api/status", "/secretapi/status/404", "/otherapi/api/status"):
            async with running.session.get(running.url(target)) as resp:
                await resp.read()
    lines = [e for e in log_events(log_stream) if e.get("event") == "request"]
    assert {(e["route"], e["status"]) for e in lines} == {("secretapi", 404), ("otherapi", 200)}

    log_stream.truncate(0)
    log_stream.seek(0)
    settings = load_config(write_config(access_log="off"))
    async with start(settings) as running:
        async with running.session.get(running.url("/secretapi/status/500")) as resp:
            await resp.read()
        async with running.session.get(running.admin + "/metrics") as resp:
            text = await resp.text()
    assert not [e for e in log_events(log_stream) if e.get("event") == "request" and e.get("route") == "secretapi"]
    assert 'bearerd_requests_total{method="GET",route="secretapi",status_class="5xx"} 1.0' in text


async def test_the_admin_listener_advertises_no_versions(running: Running) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/no-such-page"):
        async with running.session.get(running.admin + path) as resp:
            await resp.read()
            assert "Server" not in resp.headers, (path, resp.headers.get("Server"))
    async with running.session.post(running.admin + "/-/reload") as resp:
        assert resp.status == 409 and "Server" not in resp.headers  # no reload in this mode: still no versions


async def test_the_metrics_say_how_many_log_lines_were_dropped(running: Running) -> None:
    async with running.session.get(running.admin + "/metrics") as resp:
        text = await resp.text()
    assert re.search(r"^bearerd_log_lines_dropped_total \d+\.0$", text, re.MULTILINE)
