"""Turn the raw results into the one table people read, plus the JSON and PNG kept beside it.

The table and its targets live here (not in the scenarios) so the numbers gathered and the
judgement passed on them stay separate: re-rendering an old ``latest.json`` needs no re-run.

    .venv/bin/python bench/report.py [bench/results/latest.json]   → rewrites latest.md and latest.png beside it
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGETS = ("direct", "nginx", "caddy", "naive", "bearerd")  # naive: the 25-line aiohttp proxy (bench/naive.py)
HEADERS = ("direct", "nginx", "Caddy", "naive aiohttp", "bearerd")
SMALL_GOAL = 0.75  # small GET c=32 and c=256: req/s ≥ 0.75x direct (nginx does ~0.89x)
CPU_GOAL = 2.0  # bearerd CPU per request ≤ 2x nginx's, same run
LATENCY_GOALS = {"p50": 0.1, "p99": 0.5}  # ms added over direct at c=1
STREAM_RSS_MB = 80
INFLIGHT_RSS_MB = 150
INFLIGHT_KB = 40
IDLE_RSS_MB = 100
WRK_ROWS = (
    ("small_c1", "small GET c=1", None),
    ("small_c32", "small GET c=32", SMALL_GOAL),
    ("small_c256", "small GET c=256", SMALL_GOAL),
    ("small_tls_c32", "small GET over TLS upstream c=32", None),
)

LEGEND = """
How each row is measured (bench/run.py; raw numbers per round in latest.json):
- wrk rows: every target once per round, in this order, for the rounds stated above (before each
  measured run a warm-up of ≥ 200 GETs over as many connections); req/s and latencies are medians
  over rounds; "÷ direct" is target ÷ direct req/s within each round, given as median (min … max
  over rounds); "added over direct" likewise per round. CPU µs/request: utime+stime of the
  target's processes (nginx with its worker; direct = the backend) from /proc/PID/stat before and
  after each measured run, divided by the requests wrk completed; "bearerd CPU ÷ nginx CPU" is
  formed per round.
- TLS upstream: the backend also serves HTTPS with a private CA (trustme); each proxy verifies it
  (bearerd: the credential's ca_file; nginx: proxy_ssl_trusted_certificate; Caddy: tls_trust_pool),
  direct = wrk against the HTTPS backend.
- streaming: one curl transfer per target; nginx with proxy_buffering/proxy_request_buffering off;
  peak RSS is VmHWM after resetting it (clear_refs) just before the transfer; CPU s per GiB from
  /proc/PID/stat around it.
- 1,000 concurrent over TLS: a fresh bearerd; 1,000 connections opened, then one GET each to a
  1 s (quick: 0.2 s) HTTPS endpoint through a pool of 64 connections (pool_wait_s long enough for
  all); peak = VmHWM reset just before. Per pooled TLS connection = (RSS with the pool's 64
  connections open and idle - RSS with none) ÷ 64, after a same-shaped warm-up on the plain route;
  KB per in-flight request beyond the pool = (peak - before - 64 x that) ÷ 1,000. nginx and Caddy
  (not bounded: one upstream connection per request) are shown for reference.
- Caddy runs with GOMAXPROCS=1, like nginx's one worker and bearerd's one event loop.
- MB = 1e6 bytes, KB = 1e3 bytes, GB/s = 1e9 bytes/s, latency in ms.
"""


@dataclass
class Row:
    scenario: str
    values: dict[str, float | None]  # per target
    digits: int
    target: str
    met: bool | None  # None: informational row
    ratio: float | None = None
    text: dict[str, str] = field(default_factory=dict)  # per-target cells written out (spreads)
    ratio_text: str | None = None


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _per_target(s: dict[str, Any], name: str, field: str) -> dict[str, float | None]:
    return {t: _get(s, name, t, field) for t in TARGETS}


def _ratio(values: dict[str, float | None]) -> float | None:
    d, b = values.get("direct"), values.get("bearerd")
    return b / d if d and b is not None else None


def _added(values: dict[str, float | None]) -> dict[str, float | None]:
    d = values.get("direct")
    return {t: (v - d if v is not None and d is not None else None) for t, v in values.items() if t != "direct"}


def _spread_text(sp: dict[str, Any] | None, digits: int, suffix: str = "") -> str | None:
    """``median (min … max)`` of a rounds.spread, or just the median when there was one round."""
    if sp is None:
        return None
    median = f"{sp['median']:,.{digits}f}{suffix}"
    if len(sp.get("rounds", ())) < 2:
        return median
    return f"{median} ({sp['min']:,.{digits}f} … {sp['max']:,.{digits}f})"


def _spreads(s: dict[str, Any], name: str, key: str) -> dict[str, dict[str, Any] | None]:
    return {t: _get(s, name, t, key) for t in TARGETS}


def _median(sp: dict[str, Any] | None) -> float | None:
    return None if sp is None else float(sp["median"])


def _wrk_rows(s: dict[str, Any], name: str, label: str, goal: float | None) -> list[Row]:
    n = _get(s, name, "per_round")
    rounds_note = f" (median of {len(n)} rounds)" if isinstance(n, list) and len(n) > 1 else ""
    rps = _per_target(s, name, "rps")
    vs = _spreads(s, name, "vs_direct")
    b = _median(vs.get("bearerd"))
    met = None if goal is None or b is None else b >= goal
    target = f"≥ {goal}x direct" if goal else ""
    rows = [Row(f"{label} req/s{rounds_note}", rps, 0, target, met, b, ratio_text=_spread_text(vs["bearerd"], 2, "x"))]
    text = {t: v for t, sp in vs.items() if t != "direct" and (v := _spread_text(sp, 2)) is not None}
    rows.append(Row("  ÷ direct per round, median (min … max)", {}, 2, "", None, text=text))
    if name == "small_c1":
        for pct, limit in LATENCY_GOALS.items():
            lat = _per_target(s, name, f"{pct}_ms")
            rows.append(Row(f"  latency {pct} (ms)", lat, 3, "", None, _ratio(lat)))
            added = _spreads(s, name, f"added_{pct}_ms")
            values = {t: _median(sp) for t, sp in added.items() if t != "direct"}
            text = {t: v for t, sp in added.items() if t != "direct" and (v := _spread_text(sp, 3)) is not None}
            ba = values.get("bearerd")
            met = None if ba is None else ba <= limit
            rows.append(Row(f"  added over direct, {pct} (ms)", values, 3, f"≤ {limit} ms", met, text=text))
    cpu = _per_target(s, name, "cpu_us_per_req")
    rows.append(Row("  CPU µs/request (median)", cpu, 1, "", None))
    vs_nginx = _get(s, name, "bearerd", "cpu_vs_nginx")
    c = _median(vs_nginx)
    text = {"bearerd": v} if (v := _spread_text(vs_nginx, 2, "x")) is not None else {}
    rows.append(
        Row("  bearerd CPU ÷ nginx CPU, median (min … max)", {"bearerd": c}, 2, f"≤ {CPU_GOAL:g}x nginx",
            None if c is None else c <= CPU_GOAL, text=text)
    )  # fmt: skip
    errors = {t: float((_get(s, name, t, "errors") or 0) + (_get(s, name, t, "non2xx3xx") or 0)) for t in TARGETS}
    if any(errors.values()):
        rows.append(Row("  wrk errors + non-2xx (all rounds)", dict(errors), 0, "", None))
    return rows


def _inflight_rows(f: dict[str, Any]) -> list[Row]:
    n, slow = f.get("requests"), f.get("slow_ms")
    peak = _per_target({"f": f}, "f", "peak_rss_mb")
    b = f.get("bearerd", {})
    ok = b.get("failed") == 0 and b.get("completed") == n
    bp = peak.get("bearerd")
    label = f"{n:,} concurrent slow ({slow} ms) GETs, TLS upstream: peak RSS (MB)"
    met = None if bp is None else bp <= INFLIGHT_RSS_MB and ok
    rows = [Row(label, peak, 1, f"≤ {INFLIGHT_RSS_MB} MB, all complete", met)]
    rows.append(Row("  RSS before (MB)", _per_target({"f": f}, "f", "rss_before_mb"), 1, "", None))
    text = {t: f"{f[t].get('completed')} / {f[t].get('failed')}" for t in TARGETS if isinstance(f.get(t), dict)}
    rows.append(Row("  completed / failed", {}, 0, "", None, text=text))
    rows.append(Row("  total time (s)", _per_target({"f": f}, "f", "total_s"), 2, "", None))
    conns = _per_target({"f": f}, "f", "upstream_connections")
    pool, bc = f.get("pool_max_connections"), conns.get("bearerd")
    met = None if bc is None or pool is None else bc <= pool
    rows.append(Row("  upstream connections used", conns, 0, f"bearerd ≤ {pool}", met))
    per_conn = b.get("per_tls_connection_kb")
    rows.append(Row(f"  per pooled TLS connection, measured over {b.get('pool_connections')} (KB)",
                    {"bearerd": per_conn}, 1, "", None))  # fmt: skip
    beyond = b.get("kb_per_inflight_beyond_pool")
    rows.append(Row("  per in-flight request beyond the pool (KB)", {"bearerd": beyond}, 1, f"≤ {INFLIGHT_KB} KB",
                    None if beyond is None else beyond <= INFLIGHT_KB))  # fmt: skip
    return rows


def build_rows(results: dict[str, Any]) -> list[Row]:
    s: dict[str, Any] = results["scenarios"]
    rows: list[Row] = []
    for name, label, goal in WRK_ROWS:
        if name in s:
            rows += _wrk_rows(s, name, label, goal)
    for name in ("download", "upload"):
        if name in s:
            size = _get(s, name, "size_label") or ""
            gbps = _per_target(s, name, "gbps")
            b, n = gbps.get("bearerd"), gbps.get("nginx")
            met = None if b is None or n is None else b >= 2 * n
            rows.append(Row(f"{name} {size} (GB/s)", gbps, 2, "≥ 2x nginx (buffering off)", met, _ratio(gbps)))
            gib = (_get(s, name, "bytes") or 0) / 2**30
            cpu = {t: v / gib if v is not None and gib else None for t, v in _per_target(s, name, "cpu_s").items()}
            rows.append(Row("  CPU s per GiB", cpu, 2, "", None))
            rss = _per_target(s, name, "peak_rss_mb")
            b = rss.get("bearerd")
            rows.append(Row(f"  peak RSS during {name} (MB)", rss, 1, f"≤ {STREAM_RSS_MB} MB",
                            None if b is None else b <= STREAM_RSS_MB))  # fmt: skip
    if "tls_inflight" in s:
        rows += _inflight_rows(s["tls_inflight"])
    if "idle" in s:
        count = _get(s, "idle", "count")
        rss = _per_target(s, "idle", "rss_mb")
        errors = _per_target(s, "idle", "errors")
        b, e = rss.get("bearerd"), errors.get("bearerd")
        met = None if b is None or e is None else b <= IDLE_RSS_MB and e == 0
        rows.append(Row(f"{count} idle keep-alive conns, RSS (MB)", rss, 1, f"≤ {IDLE_RSS_MB} MB, 0 errors", met))
        rows.append(Row("  errors", errors, 0, "", None))
    if "token_hit" in s:
        us = _get(s, "token_hit", "us_per_call")
        rows.append(Row("token cache hit (µs/call)", {"bearerd": us}, 3, "≤ 2 µs", None if us is None else us <= 2))
    if "cold_start" in s:
        c = s["cold_start"]
        calls = c.get("token_calls")
        n = c.get("requests")
        rows.append(Row(f"cold start, {n} requests: token calls", {"bearerd": calls}, 0, "= 1", calls == 1))
        rows.append(Row("  non-200 answers", {"bearerd": c.get("non_200")}, 0, "", None))
        first, last = c.get("first_ttfb_ms"), c.get("last_ttfb_ms")
        text = {"bearerd": f"{_fmt(first, 1)} / {_fmt(last, 1)}"}
        rows.append(Row("  TTFB first / last (ms)", {"bearerd": first}, 1, "", None, text=text))
    if "fleet" in s:
        f = s["fleet"]
        n = f.get("replicas")
        alone, shared = _get(f, "alone", "calls_per_minute"), _get(f, "redis", "calls_per_minute")
        window = (f.get("token_lifetime_s") or 0) / 2
        per_window = 60 / window if window else None
        met = None if shared is None or per_window is None else shared <= per_window * 1.5
        rows.append(Row(f"fleet of {n}: token calls/min, alone", {"bearerd": alone}, 1, f"≈ {n} per window", None))
        rows.append(Row(f"fleet of {n}: token calls/min, Redis", {"bearerd": shared}, 1, "≈ 1 per window", met))
        failed = sum(_get(f, p, "requests_failed") or 0 for p in ("alone", "redis"))
        rows.append(Row("  failed requests", {"bearerd": failed}, 0, "", None))
    return rows


def _fmt(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def markdown(rows: list[Row], legend: bool = True) -> str:
    lines = [
        f"| scenario | {' | '.join(HEADERS)} | bearerd/direct | target | met? |",
        "|---|" + "---:|" * (len(TARGETS) + 1) + "---|:---:|",
    ]
    for r in rows:
        cells = [r.text.get(t) or _fmt(r.values.get(t), r.digits) for t in TARGETS]
        ratio = r.ratio_text or (f"{r.ratio:.2f}x" if r.ratio is not None else "")
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.scenario} | {' | '.join(cells)} | {ratio} | {r.target} | {met} |")
    return "\n".join(lines) + "\n" + (LEGEND if legend else "")


def caption(results: dict[str, Any]) -> str:
    m, run = results.get("machine", {}), results.get("run", {})
    plan = run.get("plan", {})
    return (
        f"bearerd benchmark ({'quick' if run.get('quick') else 'full'}), {m.get('date')}: {m.get('nproc')}x "
        f"{m.get('cpu_model')}, Linux {m.get('kernel')}, Python {m.get('python')}, aiohttp {m.get('aiohttp')}, "
        f"{m.get('wrk')}, {m.get('nginx') or 'no nginx'}, {m.get('caddy') or 'no caddy'}; "
        f"bearerd access_log={run.get('bearerd_access_log')}; {plan.get('rounds')} interleaved round(s) of "
        f"{plan.get('wrk_s')} s per wrk row; load average (1, 5, 15 min) {results.get('load_before')} before, "
        f"{results.get('load_after')} after; wall time {run.get('wall_s', 0):.0f} s.\n\n"
    )


def document(results: dict[str, Any]) -> str:
    """``latest.md``: the caption, the table with its legend, and any notes (a skipped peer)."""
    notes = "".join(f"\n- {note}" for note in results.get("notes", ()))
    errors = "".join(f"\n- scenario {name} failed: {error}" for name, error in results.get("errors", {}).items())
    tail = notes + errors
    return caption(results) + markdown(build_rows(results)) + tail + ("\n" if tail else "")


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results" / "latest.json"
    results: dict[str, Any] = json.loads(source.read_text())
    (source.parent / "latest.md").write_text(document(results))
    write_png(source.parent / "latest.png", results)
    print(f"wrote {source.parent}/latest.md, latest.png")


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _grouped(
    ax: Any,
    groups: int,
    series: dict[str, list[float | None]],
    colors: dict[str, str],
    fmt: str,
    spreads: dict[str, list[dict[str, Any] | None]] | None = None,
) -> None:
    """One bar per series in each group; a missing value draws no bar (and no "0")."""
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        at = [j for j in range(groups) if values[j] is not None]
        if not at:
            continue
        xs = [j + (i - (len(series) - 1) / 2) * width for j in at]
        ys = [float(values[j] or 0) for j in at]
        err = None
        if spreads is not None:
            sp = [spreads[name][j] or {"min": ys[k], "max": ys[k]} for k, j in enumerate(at)]
            err = [[y - float(x["min"]) for y, x in zip(ys, sp, strict=True)],
                   [float(x["max"]) - y for y, x in zip(ys, sp, strict=True)]]  # fmt: skip
        bars = ax.bar(xs, ys, width, yerr=err, capsize=2, label=name, color=colors[name])
        ax.bar_label(bars, fmt=fmt, fontsize=7)


def write_png(path: Path, results: dict[str, Any]) -> None:
    """Four panels: req/s vs direct (with spread), CPU per request, streaming GB/s, bearerd memory vs budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s: dict[str, Any] = results["scenarios"]
    fig, ((ax1, ax2), (ax3, ax4)) = plt.subplots(2, 2, figsize=(15, 9.5))
    colors = {"direct": "#9e9e9e", "nginx": "#4caf50", "caddy": "#9c27b0", "naive": "#ff9800", "bearerd": "#1f77b4"}
    short = {"small_c1": "c=1", "small_c32": "c=32", "small_c256": "c=256", "small_tls_c32": "TLS up, c=32"}
    labels = [(n, short[n]) for n, _, _ in WRK_ROWS if n in s]

    proxies = ("nginx", "caddy", "naive", "bearerd")
    spreads = {t: [_get(s, n, t, "vs_direct") for n, _ in labels] for t in proxies}
    medians = {t: [sp and sp["median"] for sp in v] for t, v in spreads.items()}
    _grouped(ax1, len(labels), medians, colors, "%.2f", spreads)
    ax1.set_xticks(range(len(labels)), [lbl for _, lbl in labels])
    ax1.axhline(SMALL_GOAL, color="red", ls="--", lw=1, label=f"target c=32, c=256 ({SMALL_GOAL}x)")
    ax1.set_title("small GET req/s ÷ direct (median of rounds; whiskers: min … max)")
    ax1.set_ylabel("req/s ÷ direct req/s")
    top = max([1.0] + [float(sp["max"]) for v in spreads.values() for sp in v if sp])
    ax1.set_ylim(0, top * 1.25)
    ax1.legend(fontsize=8, loc="upper right", ncol=3)

    cpu = {t: [_get(s, n, t, "cpu_us_per_req") for n, _ in labels] for t in TARGETS}
    _grouped(ax2, len(labels), cpu, colors, "%.0f")
    ax2.set_xticks(range(len(labels)), [lbl for _, lbl in labels])
    ax2.set_title("CPU per request of each target process (direct = the backend)")
    ax2.set_ylabel("µs CPU / request (utime+stime)")
    ax2.legend(fontsize=8)

    dirs = [n for n in ("download", "upload") if n in s]
    _grouped(ax3, len(dirs), {t: [_get(s, n, t, "gbps") for n in dirs] for t in TARGETS}, colors, "%.2f")
    ax3.set_xticks(range(len(dirs)), [f"{n} {_get(s, n, 'size_label') or ''}" for n in dirs])
    ax3.set_title("streaming through each target (target: bearerd ≥ 2x nginx)")
    ax3.set_ylabel("GB/s (1e9 B/s)")
    ax3.legend(fontsize=8)

    mem = [
        ("download peak", _get(s, "download", "bearerd", "peak_rss_mb"), STREAM_RSS_MB),
        ("upload peak", _get(s, "upload", "bearerd", "peak_rss_mb"), STREAM_RSS_MB),
        (f"{_get(s, 'tls_inflight', 'requests')} in flight, TLS", _get(s, "tls_inflight", "bearerd", "peak_rss_mb"),
         INFLIGHT_RSS_MB),
        (f"{_get(s, 'idle', 'count')} idle", _get(s, "idle", "bearerd", "rss_mb"), IDLE_RSS_MB),
    ]  # fmt: skip
    mem = [m for m in mem if m[1] is not None]
    start = _get(results, "rss_after_start_mb", "bearerd")
    bars = ax4.bar([m[0] for m in mem], [m[1] for m in mem], 0.5, color=colors["bearerd"], label="bearerd RSS")
    ax4.bar_label(bars, fmt="%.0f", fontsize=8)
    for j, (_, _, limit) in enumerate(mem):
        ax4.hlines(limit, j - 0.35, j + 0.35, color="red", ls="--", lw=1, label="target" if j == 0 else None)
    if start is not None:
        ax4.axhline(start, color="black", ls=":", lw=1, label=f"after start, idle ({start:.0f} MB)")
    ax4.set_title("bearerd memory (peak = VmHWM; idle = RSS)")
    ax4.set_ylabel("MB (1e6 B)")
    ax4.set_ylim(0, max([170.0] + [m[1] * 1.15 for m in mem]))
    if mem:
        ax4.legend(fontsize=8, loc="upper left")

    m = results.get("machine", {})
    plan = _get(results, "run", "plan") or {}
    fig.suptitle(
        f"bearerd benchmark — {m.get('nproc')} CPU {m.get('cpu_model', '')}, {m.get('date', '')}, "
        f"{plan.get('rounds', '?')} round(s), load {results.get('load_before', '?')} before, "
        f"{results.get('load_after', '?')} after",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
