"""Interleaved wrk rounds → one figure per target: medians, and comparisons made round by round.

Each round runs every target once, in the same order (A B C … A B C …), so a busy minute on a
shared machine lands on one round of every target instead of on every round of one. Comparisons
(target ÷ direct req/s, target - direct latency, CPU ÷ nginx's CPU) are formed inside a round,
then their median is reported with the min … max across rounds: the spread says how far to trust
the median. The raw rounds stay in ``latest.json`` beside these summaries.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

MEDIANS = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_us_per_req", "backend_cpu_us_per_req")
SUMS = ("requests", "errors", "non2xx3xx")


def spread(values: list[float]) -> dict[str, Any] | None:
    """Median and min … max of per-round values; None when there are none."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _diff(a: float, b: float) -> float | None:
    return a - b


def paired(
    per_round: list[dict[str, dict[str, Any]]],
    name: str,
    reference: str,
    field: str,
    op: Callable[[float, float], float | None],
) -> dict[str, Any] | None:
    """``op(name's field, reference's field)`` in every round that measured both, then their spread."""
    values: list[float] = []
    for row in per_round:
        a, b = row.get(name, {}).get(field), row.get(reference, {}).get(field)
        if a is not None and b is not None and (value := op(a, b)) is not None:
            values.append(value)
    return spread(values)


def summarize(per_round: list[dict[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    runs = [row[name] for row in per_round if name in row]
    out: dict[str, Any] = {}
    for field in MEDIANS:
        values = [run[field] for run in runs if run.get(field) is not None]
        out[field] = statistics.median(values) if values else None
    for field in SUMS:
        out[field] = sum(run.get(field, 0) for run in runs)
    out["rps_all_rounds"] = [round(run["rps"]) for run in runs]
    out["vs_direct"] = paired(per_round, name, "direct", "rps", _ratio)
    out["added_p50_ms"] = paired(per_round, name, "direct", "p50_ms", _diff)
    out["added_p99_ms"] = paired(per_round, name, "direct", "p99_ms", _diff)
    out["cpu_vs_nginx"] = paired(per_round, name, "nginx", "cpu_us_per_req", _ratio)
    return out
