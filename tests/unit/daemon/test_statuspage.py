"""The status page renders the doctor's report: steps, countdown, fixes, the sign-in line — escaped."""

from __future__ import annotations

from bearerd.daemon import statuspage
from bearerd.doctor import RouteReport, Step

NOW = 1_900_000_000.0


def test_page_shows_steps_countdown_fix_and_sign_in_line() -> None:
    ok = RouteReport(
        "secretapi",
        "app",
        "client_secret",
        [
            Step("config", True, "entry → upstream"),
            Step("token", True, "acquired", facts={"claims": {"exp": NOW + 125}}),
        ],
    )
    user = RouteReport(
        "hr<script>",
        "alice",
        "device_code",
        [Step("token", False, "no signed-in user", "bearerd login alice -c f.toml")],
        login_command="bearerd login alice -c f.toml",
    )
    page = statuspage.render([ok, user], NOW, "/etc/bearerd/bearerd.toml")
    assert "<h1>bearerd — 1 of 2 route(s) need attention</h1>" in page
    assert 'data-expires-in="125" data-remaining="125">2 min 5 s</span>' in page
    assert "fix: bearerd login alice -c f.toml" in page
    assert '<p class="signin">sign in: <code>bearerd login alice -c f.toml</code></p>' in page
    assert "hr<script>" not in page and "hr&lt;script&gt;" in page
    assert 'href="/?probe=1"' in page and "setInterval" in page
