"""Turn the raw results into the one table people read, plus the JSON and PNG kept beside it.

The table and its targets live here (not in the scenarios) so the numbers gathered and the
judgement passed on them stay separate: re-rendering an old ``latest.json`` needs no re-run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGETS = ("direct", "nginx", "naive", "bearerd")  # naive: the 25-line aiohttp proxy (bench/naive.py)


@dataclass
class Row:
    scenario: str
    values: dict[str, float | None]  # per target
    digits: int
    target: str
    met: bool | None  # None: informational row
    ratio: float | None = None


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


def build_rows(results: dict[str, Any]) -> list[Row]:
    s: dict[str, Any] = results["scenarios"]
    rows: list[Row] = []
    if "small_c1" in s:
        rps = _per_target(s, "small_c1", "rps")
        rows.append(Row("small GET c=1 req/s", rps, 0, "", None, _ratio(rps)))
        for pct, limit in (("p50", 0.3), ("p99", 1.0)):
            lat = _per_target(s, "small_c1", f"{pct}_ms")
            rows.append(Row(f"small GET c=1 latency {pct} (ms)", lat, 3, "", None, _ratio(lat)))
            added = _added(lat)
            b = added.get("bearerd")
            rows.append(
                Row(f"  added over direct, {pct} (ms)", added, 3, f"≤ {limit} ms", None if b is None else b <= limit)
            )
    for name, label, goal in (("small_c32", "c=32", 0.6), ("small_c256", "c=256", None)):
        if name in s:
            rps = _per_target(s, name, "rps")
            r = _ratio(rps)
            met = None if goal is None or r is None else r >= goal
            rows.append(Row(f"small GET {label} req/s", rps, 0, f"≥ {goal}x direct" if goal else "", met, r))
    for name in ("download", "upload"):
        if name in s:
            size = _get(s, name, "size_label") or ""
            gbps = _per_target(s, name, "gbps")
            b, n = gbps.get("bearerd"), gbps.get("nginx")
            met = None if b is None else b >= 1.0 and (n is None or b >= 2 * n)
            rows.append(Row(f"{name} {size} (GB/s)", gbps, 2, "≥ 1.0 GB/s and ≥ 2x nginx", met, _ratio(gbps)))
            rss = _per_target(s, name, "peak_rss_mb")
            b = rss.get("bearerd")
            rows.append(Row(f"  peak RSS during {name} (MB)", rss, 1, "≤ 80 MB", None if b is None else b <= 80))
    if "idle" in s:
        count = _get(s, "idle", "count")
        rss = _per_target(s, "idle", "rss_mb")
        errors = _per_target(s, "idle", "errors")
        b, e = rss.get("bearerd"), errors.get("bearerd")
        met = None if b is None or e is None else b <= 150 and e == 0
        rows.append(Row(f"{count} idle keep-alive conns, RSS (MB)", rss, 1, "≤ 150 MB, 0 errors", met))
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
        rows.append(Row("  TTFB first / last (ms)", {"bearerd": c.get("first_ttfb_ms")}, 1, "", None))
        rows[-1].values["bearerd_last"] = c.get("last_ttfb_ms")
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


def markdown(rows: list[Row]) -> str:
    lines = [
        "| scenario | direct | nginx | naive aiohttp | bearerd | bearerd/direct | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|:---:|",
    ]
    for r in rows:
        cells = [_fmt(r.values.get(t), r.digits) for t in TARGETS]
        if "bearerd_last" in r.values:
            cells[3] += " / " + _fmt(r.values["bearerd_last"], r.digits)
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.scenario} | {' | '.join(cells)} | {ratio} | {r.target} | {met} |")
    return "\n".join(lines) + "\n"


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def write_png(path: Path, results: dict[str, Any]) -> None:
    """Three panels: request-rate ratios, streaming GB/s, bearerd memory vs its budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s: dict[str, Any] = results["scenarios"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.8))
    colors = {"direct": "#9e9e9e", "nginx": "#4caf50", "naive": "#ff9800", "bearerd": "#1f77b4"}

    labels = [(n, lbl) for n, lbl in (("small_c1", "c=1"), ("small_c32", "c=32"), ("small_c256", "c=256")) if n in s]
    for i, target in enumerate(("nginx", "naive", "bearerd")):
        ys = [(_get(s, n, target, "rps") or 0) / (_get(s, n, "direct", "rps") or math.inf) for n, _ in labels]
        bars = ax1.bar([j + (i - 1) * 0.27 for j in range(len(labels))], ys, 0.27, label=target, color=colors[target])
        ax1.bar_label(bars, fmt="%.2f", fontsize=8)
    ax1.set_xticks(range(len(labels)), [lbl for _, lbl in labels])
    ax1.axhline(0.6, color="red", ls="--", lw=1, label="target c=32 (0.6x)")
    ax1.set_title("small GET throughput vs direct")
    ax1.set_ylabel("req/s ÷ direct req/s")
    ax1.legend(fontsize=8)

    dirs = [n for n in ("download", "upload") if n in s]
    for i, target in enumerate(TARGETS):
        ys = [_get(s, n, target, "gbps") or 0 for n in dirs]
        bars = ax2.bar([j + (i - 1.5) * 0.2 for j in range(len(dirs))], ys, 0.2, label=target, color=colors[target])
        ax2.bar_label(bars, fmt="%.2f", fontsize=8)
    ax2.set_xticks(range(len(dirs)), [f"{n} {_get(s, n, 'size_label') or ''}" for n in dirs])
    ax2.axhline(1.0, color="red", ls="--", lw=1, label="target 1.0 GB/s")
    ax2.set_title("streaming through each target")
    ax2.set_ylabel("GB/s (1e9 B/s)")
    ax2.legend(fontsize=8)

    mem = [
        ("download peak", _get(s, "download", "bearerd", "peak_rss_mb"), 80),
        ("upload peak", _get(s, "upload", "bearerd", "peak_rss_mb"), 80),
        (f"{_get(s, 'idle', 'count')} idle", _get(s, "idle", "bearerd", "rss_mb"), 150),
    ]
    mem = [m for m in mem if m[1] is not None]
    start = _get(results, "rss_after_start_mb", "bearerd")
    bars = ax3.bar([m[0] for m in mem], [m[1] for m in mem], 0.5, color=colors["bearerd"], label="bearerd RSS")
    ax3.bar_label(bars, fmt="%.0f", fontsize=8)
    for j, (_, _, limit) in enumerate(mem):
        ax3.hlines(limit, j - 0.35, j + 0.35, color="red", ls="--", lw=1, label="target" if j == 0 else None)
    if start is not None:
        ax3.axhline(start, color="black", ls=":", lw=1, label=f"after start, idle ({start:.0f} MB)")
    ax3.set_title("bearerd memory")
    ax3.set_ylabel("MB (1e6 B)")
    ax3.set_ylim(0, max([170.0] + [m[1] * 1.15 for m in mem]))
    if mem:
        ax3.legend(fontsize=8, loc="upper left")

    m = results.get("machine", {})
    fig.suptitle(f"bearerd benchmark — {m.get('nproc')} CPU {m.get('cpu_model', '')}, {m.get('date', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
