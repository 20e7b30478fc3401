"""The dashboard's data layer: plain functions from sessions to the rows and points each page draws.

Kept free of Dash and Plotly so it is tested without a browser (tests/test_dashboard_data.py) and so a team
can reuse it in a notebook. Input is what ``pytest_hwbench.report.fleet_data`` loads (from MLflow or run
directories); output is small frozen dataclasses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.report.fleet import FLEET_IGNORED, FleetComparison, analyze_fleet
from pytest_hwbench.report.fleet_data import MetricSeries, SessionRecord, TestRecord
from pytest_hwbench.verdict.envdiff import EnvChange, environment_diff

#: Fingerprint sections whose change is worth a mark on a trend (what an upgrade gate is about).
ENV_KEYS = ("kernel", "os.", "gpu.", "dmi.", "memory", "cpu.", "packages.", "python.", "container.")
#: A host whose newest session is older than this is shown as stale on the overview.
STALE_AFTER_S = 7 * 86400
VERDICT_ORDER = ("ERROR", "FAIL", "INCONCLUSIVE", "WARN", "NO_BASELINE", "STALE", "SKIP", "PASS")


# ------------------------------------------------------------------------------------------ filtering

@dataclass(frozen=True)
class Filters:
    testbed: str | None = None
    host: str | None = None
    recipe: str | None = None
    test: str | None = None


def filter_sessions(sessions: Iterable[SessionRecord], f: Filters) -> list[SessionRecord]:
    return [s for s in sessions if (not f.testbed or s.testbed == f.testbed) and (not f.host or s.host == f.host)
            and (not f.recipe or s.recipe == f.recipe)]


@dataclass(frozen=True)
class FilterOptions:
    testbeds: tuple[str, ...]
    hosts: tuple[str, ...]
    recipes: tuple[str, ...]
    tests: tuple[str, ...]


def filter_options(sessions: Sequence[SessionRecord]) -> FilterOptions:
    return FilterOptions(testbeds=tuple(sorted({s.testbed for s in sessions})),
                         hosts=tuple(sorted({s.host for s in sessions})),
                         recipes=tuple(sorted({s.recipe for s in sessions})),
                         tests=tuple(sorted({t.test_id for s in sessions for t in s.tests})))


def metrics_of(sessions: Sequence[SessionRecord], test_id: str | None) -> list[str]:
    return sorted({m for s in sessions for t in s.tests if test_id in (None, t.test_id) for m in t.metrics})


def better_label(better: str) -> str:
    """How every axis says which way is good."""
    return "↑ higher is better" if better == "higher" else "↓ lower is better"


# ------------------------------------------------------------------------------------------- overview

@dataclass(frozen=True)
class SystemRow:
    testbed: str
    host: str
    sessions: int
    last_run: str
    last_run_id: str
    verdict: str
    counts: dict[str, int]
    health: str  # "ok" | "failing" | "incomplete" | "stale"
    kernel: str
    driver: str
    bios: str


def systems_overview(sessions: Sequence[SessionRecord], now: float | None = None) -> list[SystemRow]:
    """One row per (testbed, host): its newest session's verdicts and environment, and its health."""
    now = time.time() if now is None else now
    latest: dict[tuple[str, str], SessionRecord] = {}
    counts: dict[tuple[str, str], int] = {}
    for s in sessions:
        key = (s.testbed, s.host)
        counts[key] = counts.get(key, 0) + 1
        if key not in latest or (s.started_at or 0) >= (latest[key].started_at or 0):
            latest[key] = s
    rows = []
    for key in sorted(latest):
        s = latest[key]
        per: dict[str, int] = {}
        for t in s.tests:
            per[t.verdict] = per.get(t.verdict, 0) + 1
        verdict = s.verdict or "NONE"
        if verdict in ("FAIL", "ERROR"):
            health = "failing"
        elif not s.complete:
            health = "incomplete"
        elif s.started_at is not None and now - s.started_at > STALE_AFTER_S:
            health = "stale"
        else:
            health = "ok"
        fp = s.fingerprint
        gpu = cast("dict[str, Any]", fp.get("gpu") if isinstance(fp.get("gpu"), dict) else {})
        dmi = cast("dict[str, Any]", fp.get("dmi") if isinstance(fp.get("dmi"), dict) else {})
        rows.append(SystemRow(testbed=s.testbed, host=s.host, sessions=counts[key], last_run=s.when,
                              last_run_id=s.run_id, verdict=verdict,
                              counts=dict(sorted(per.items(), key=lambda kv: _rank(kv[0]))), health=health,
                              kernel=str(fp.get("kernel") or "-"), driver=str(gpu.get("driver_version") or "-"),
                              bios=str(dmi.get("bios_version") or "-")))
    return rows


def _rank(verdict: str) -> int:
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)


# ------------------------------------------------------------------------------------- cross-system

@dataclass(frozen=True)
class SystemPoint:
    testbed: str
    host: str
    median: float
    ci: tuple[float, float]
    sessions: int
    unit: str
    better: str


def _median_ci(series: Sequence[MetricSeries]) -> tuple[float, tuple[float, float]]:
    values = [v for s in series for v in s.values]
    if len(series) == 1 and series[0].median is not None and series[0].ci is not None:
        return series[0].median, series[0].ci
    summ = summarize(values)
    lo, hi = summ.ci["p50"]
    return summ.percentiles["p50"], (lo, hi)


def cross_system(sessions: Sequence[SessionRecord], test_id: str, metric: str, last: int = 3) -> list[SystemPoint]:
    """Per host, the median of its newest ``last`` sessions of one test and metric, with a CI."""
    per: dict[tuple[str, str], list[tuple[float, MetricSeries]]] = {}
    for s in sessions:
        for t in s.tests:
            if t.test_id == test_id and metric in t.metrics and t.metrics[metric].values:
                per.setdefault((s.testbed, s.host), []).append((s.started_at or 0, t.metrics[metric]))
    out = []
    for (tb, host), items in sorted(per.items()):
        items.sort(key=lambda x: x[0])
        recent = [m for _, m in items[-last:]]
        med, ci = _median_ci(recent)
        out.append(SystemPoint(testbed=tb, host=host, median=med, ci=ci, sessions=len(recent),
                               unit=recent[-1].unit, better=recent[-1].better))
    return out


def fleet_spread(sessions: Sequence[SessionRecord], test_id: str, metric: str) -> list[FleetComparison]:
    """The fleet statistics (per testbed) for one test and metric, as ``hwbench fleet`` computes them."""
    return [c for c in analyze_fleet(sessions, metric=metric) if c.test_id == test_id]


# --------------------------------------------------------------------------------- model performance

@dataclass(frozen=True)
class ModelPoint:
    model: str
    size_gb: float
    test_id: str
    metric: str
    median: float
    ci: tuple[float, float]

    @property
    def gb_s(self) -> float:
        """tokens/s × model GB: the rate at which the weights are streamed (decode is bandwidth-bound)."""
        return self.median * self.size_gb


def model_size_gb(test: TestRecord) -> float | None:
    """A test's model size in GB, from ``hwbench.extra`` or the parameters: ``model_size_gb`` or
    ``model_bytes``, or ``extra["model"]["size_bytes"]`` as the GGUF benchmark (``benchmarks/test_gguf.py``)
    writes it (see the README's dashboard section)."""
    model = test.extra.get("model")
    if isinstance(model, dict):
        size = model.get("size_bytes")
        if isinstance(size, (int, float)) and not isinstance(size, bool) and math.isfinite(size) and size > 0:
            return float(size) / 1e9
    for src in (test.extra, test.params):
        for key, scale in (("model_size_gb", 1.0), ("model_gb", 1.0), ("model_bytes", 1e-9),
                           ("model_size_bytes", 1e-9)):
            v = src.get(key) if isinstance(src, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
                return float(v) * scale
    return None


def model_name(test: TestRecord) -> str:
    model = test.extra.get("model")
    if isinstance(model, dict):
        return str(model.get("id") or model.get("name") or test.name)
    return str(model or test.params.get("model") or test.name)


def is_token_rate(name: str, unit: str) -> bool:
    return ("tok" in unit.lower() and "/s" in unit) or name.endswith("tok_s")


def model_points(sessions: Sequence[SessionRecord], host: str, metric: str | None = None) -> list[ModelPoint]:
    """For one host's newest session that has sized models: tokens/s per model, by size."""
    mine = sorted((s for s in sessions if s.host == host), key=lambda s: s.started_at or 0, reverse=True)
    for s in mine:
        points = []
        for t in s.tests:
            size = model_size_gb(t)
            if size is None:
                continue
            for name, series in t.metrics.items():
                if (metric and name != metric) or (not metric and not is_token_rate(name, series.unit)):
                    continue
                if not series.values:
                    continue
                med, ci = _median_ci([series])
                model = model_name(t)
                points.append(ModelPoint(model=model, size_gb=size, test_id=t.test_id, metric=name, median=med,
                                         ci=ci))
        if points:
            return sorted(points, key=lambda p: (p.metric, p.size_gb))
    return []


# ------------------------------------------------------------------------------------------- trends

@dataclass(frozen=True)
class TrendPoint:
    host: str
    testbed: str
    time: float
    run_id: str
    median: float
    ci: tuple[float, float]
    verdict: str
    regression: bool  # the test failed here (SLO or baseline), or its baseline said FAIL
    env_changes: tuple[EnvChange, ...]  # vs the previous session of this host


def _env_changes(prev: SessionRecord | None, cur: SessionRecord) -> tuple[EnvChange, ...]:
    if prev is None:
        return ()
    changes = environment_diff(prev.fingerprint, cur.fingerprint, ignore=FLEET_IGNORED)
    return tuple(c for c in changes if c.key.startswith(ENV_KEYS))


def trend(sessions: Sequence[SessionRecord], test_id: str, metric: str) -> dict[str, list[TrendPoint]]:
    """Per host, one point per session (oldest first) with its CI, regression flag and environment changes."""
    by_host: dict[str, list[SessionRecord]] = {}
    for s in sorted(sessions, key=lambda s: s.started_at or 0):
        by_host.setdefault(s.host, []).append(s)
    out: dict[str, list[TrendPoint]] = {}
    for host, items in sorted(by_host.items()):
        prev = None
        points = []
        for s in items:
            t = next((t for t in s.tests if t.test_id == test_id), None)
            series = t.metrics.get(metric) if t else None
            if t is not None and series is not None and series.values and s.started_at is not None:
                med, ci = _median_ci([series])
                points.append(TrendPoint(host=host, testbed=s.testbed, time=s.started_at, run_id=s.run_id,
                                         median=med, ci=ci, verdict=t.verdict,
                                         regression=t.verdict == "FAIL" or t.baseline_status == "FAIL",
                                         env_changes=_env_changes(prev, s)))
            prev = s
        if points:
            out[host] = points
    return out


def unit_and_better(sessions: Sequence[SessionRecord], test_id: str | None, metric: str) -> tuple[str, str]:
    for s in reversed(sessions):
        for t in s.tests:
            if test_id in (None, t.test_id) and metric in t.metrics:
                m = t.metrics[metric]
                return m.unit, m.better
    return "", "lower"


def median_of(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else math.nan
