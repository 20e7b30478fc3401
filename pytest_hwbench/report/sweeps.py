"""Sweep reports: group a test's results over a load parameter and find the knee and the max load under SLO.

A sweep is one test function run at several values of a load parameter (``concurrency``, ``rate``, ...),
with its other parameters equal. Each point contributes its metrics' medians (and p99s) and whether all its
SLOs held; ``verdict.knee`` does the analysis. Needs at least 3 distinct loads.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

#: Parameters that denote offered load, in order of preference when a test has several.
LOAD_PARAMS: tuple[str, ...] = ("concurrency", "rate", "users", "clients", "connections")
#: Throughput metric per point: the first one a test recorded.
THROUGHPUT_METRICS: tuple[str, ...] = ("req_s", "ops_s", "tps", "qps", "output_tok_s")
#: Latency metric whose p99 gets its own knee: the first one a test recorded.
LATENCY_METRICS: tuple[str, ...] = ("latency_from_intended_ms", "ttft_ms", "e2el_ms", "latency_ms", "latency_us")
MIN_POINTS = 3


def _base_id(test_id: str, params: dict[str, Any], load_param: str) -> str:
    """The test's id without the load parameter: points of one sweep share it (other parameters equal)."""
    others = "-".join(f"{k}={v}" for k, v in sorted(params.items()) if k != load_param)
    return test_id.split("[", 1)[0] + (f"[{others}]" if others else "")


def point_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Flat metrics of one sweep point: ``name`` (median) and ``name.<stat>``."""
    point: dict[str, float] = {}
    for name, metric in result.get("metrics", {}).items():
        for stat, value in metric["summary"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                point[f"{name}.{stat}"] = float(value)
        p50 = metric["summary"].get("p50")
        point[name] = math.nan if p50 is None else float(p50)
    point["_slo_ok"] = 1.0 if all(s.get("passed") for s in result.get("slo", [])) else 0.0
    return point


def sweep_load_param(result: dict[str, Any]) -> str | None:
    """The load parameter that makes a measured result a point of a sweep (None when it is not one)."""
    params = result.get("params") or {}
    load_param = next((p for p in LOAD_PARAMS if isinstance(params.get(p), (int, float))), None)
    return load_param if load_param is not None and result.get("metrics") else None


def analyze_sweeps(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One analysis per sweep found in ``results`` (results.json's ``tests``)."""
    from pytest_hwbench.verdict.bottleneck import attribute_sweep
    from pytest_hwbench.verdict.knee import analyze_sweep

    groups: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for r in results:
        load_param = sweep_load_param(r)
        if load_param is None:
            continue
        params = r["params"]
        groups[(_base_id(r["test_id"], params, load_param), load_param)].append((float(params[load_param]), r))
    out = []
    for (base, load_param), members in sorted(groups.items()):
        if len({load for load, _ in members}) < MIN_POINTS:
            continue
        members.sort(key=lambda m: m[0])
        loads = [load for load, _ in members]
        points = [point_metrics(r) for _, r in members]
        recorded = set(members[0][1]["metrics"])
        tput = next((m for m in THROUGHPUT_METRICS if m in recorded), None)
        if tput is None:
            continue
        lat = next((m for m in LATENCY_METRICS if m in recorded), None)
        has_slo = any(r.get("slo") for _, r in members)
        analysis = analyze_sweep(loads, points, throughput=tput, latency=f"{lat}.p99" if lat else None,
                                 slo=(lambda p: p["_slo_ok"] == 1.0) if has_slo else None)
        out.append({"test": base, "load_param": load_param, "loads": loads, "throughput_metric": tput,
                    "latency_metric": f"{lat}.p99" if lat else None,
                    "points": [{"load": load, tput: p.get(tput), "slo_ok": bool(p["_slo_ok"])}
                               for load, p in zip(loads, points, strict=True)],
                    **analysis.to_dict(),
                    "bottlenecks": attribute_sweep(loads, [r for _, r in members], throughput=tput,
                                                   latency=f"{lat}.p99" if lat else None,
                                                   knee_load=analysis.throughput_knee.load)})
    return out


def describe(sweep: dict[str, Any]) -> str:
    """One line for the terminal."""
    knee = sweep["throughput_knee"]
    knee_text = (f"{sweep['throughput_metric']} knee at {sweep['load_param']}={knee['load']:.3g}"
                 if knee.get("load") is not None else "no throughput knee inside the sweep")
    sus = sweep.get("max_sustainable")
    if sus is None:
        sus_text = "no SLOs, no max load"
    elif sus["load"] is None:
        sus_text = "SLOs fail already at the lowest load"
    else:
        sus_text = f"max {sweep['load_param']} under SLO = {sus['load']:g}"
        if sus.get("first_failing_load") is not None:
            sus_text += f" (first failing {sus['first_failing_load']:g})"
    return f"{sweep['test']}: {knee_text}; {sus_text}"
