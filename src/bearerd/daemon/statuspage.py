"""The admin listener's ``GET /``: the doctor's report of the running daemon as a small HTML page.

For the person who opens ``http://127.0.0.1:9180/`` in a browser: each route with its steps (the
same ``doctor`` steps and wording as ``bearerd doctor``), the identity its token says it is for,
the token's expiry counting down (a few lines of script; the page works without it), the last
error with its fix, and for user credentials the ``bearerd login`` line. Everything shown is
escaped; no token ever reaches the page, only claims read from it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from bearerd.doctor import RouteReport, Step

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}td{padding:.3em .6em;vertical-align:top;border-top:1px solid #ddd}
.ok{color:#176c2e}.fail{color:#b00020;font-weight:bold}.skip{color:#777}.fix{color:#444}
code{background:#f3f3f3;padding:0 .2em}
"""
# Counts each countdown down once a second from the value the server rendered.
_SCRIPT = """
function fmt(s){if(s<=0)return "expired";return Math.floor(s/60)+" min "+(s%60)+" s";}
setInterval(function(){document.querySelectorAll(".countdown").forEach(function(e){
var left=parseInt(e.dataset.remaining,10)-1;e.dataset.remaining=String(left);e.textContent=fmt(left);});},1000);
"""
_MARKS = {True: ("ok", "ok"), False: ("fail", "FAIL"), None: ("skip", "skip")}


def _countdown(seconds: int) -> str:
    text = "expired" if seconds <= 0 else f"{seconds // 60} min {seconds % 60} s"
    return f'<span class="countdown" data-expires-in="{seconds}" data-remaining="{seconds}">{text}</span>'


def _step_row(step: Step, now: float) -> str:
    css, mark = _MARKS[step.ok]
    cells = html.escape(step.summary)
    exp = step.facts.get("claims", {}).get("exp") if step.name == "token" else None
    if isinstance(exp, int | float):
        cells += f"<br>expires in {_countdown(int(exp - now))}"
    if step.fix:
        cells += f'<br><span class="fix">fix: {html.escape(step.fix)}</span>'
    return f'<tr><td class="{css}">{mark}</td><td>{html.escape(step.name)}</td><td>{cells}</td></tr>'


def _route(report: RouteReport, now: float) -> str:
    css, mark = _MARKS[report.ok]
    parts = [
        f'<h2 id="route-{html.escape(report.route)}">{html.escape(report.route)} '
        f'<span class="{css}">{mark}</span></h2>',
        f"<p>credential <code>{html.escape(report.credential)}</code> ({html.escape(report.kind)})</p>",
    ]
    if report.login_command:
        parts.append(f'<p class="signin">sign in: <code>{html.escape(report.login_command)}</code></p>')
    parts.append("<table>" + "".join(_step_row(s, now) for s in report.steps) + "</table>")
    return "\n".join(parts)


def render(reports: Sequence[RouteReport], now: float, config_file: str) -> str:
    body = "\n".join(_route(r, now) for r in reports)
    failing = sum(1 for r in reports if not r.ok)
    verdict = f"{failing} of {len(reports)} route(s) need attention" if failing else f"all {len(reports)} route(s) OK"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>bearerd</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>bearerd — {html.escape(verdict)}</h1>"
        f'<p>config <code>{html.escape(config_file)}</code> · <a href="/?probe=1">check the upstreams now</a> · '
        '<a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></p>'
        f"{body}<script>{_SCRIPT}</script></body></html>\n"
    )
