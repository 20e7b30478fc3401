"""Saturation knee and max sustainable load of a load sweep.

Given points (load, metrics) — load being concurrency or offered rate — two questions:

* **Where is the knee?** The load beyond which the system stops scaling: throughput stops rising in
  proportion to load, and latency starts climbing. Found by fitting a *continuous two-segment linear
  model* ("hockey stick") by least squares and reporting its breakpoint. Why this and not, say, Kneedle
  or "max curvature": a queueing system behind a capacity limit really is two lines (linear scaling, then a
  plateau), the fit uses every point so one noisy point cannot move the knee to itself, and the breakpoint
  is continuous — a knee between two sampled loads is located between them instead of being snapped to
  a sample. For each split of the sorted points into a left and a right group the two lines are fitted
  separately; if they cross inside the gap between the groups that crossing is the exact optimum for the
  split, otherwise the continuity constraint binds and the breakpoint is at the gap's edge (3-parameter
  least squares). The split with the smallest squared error wins. A knee is reported only when the slope
  changes by at least ``min_slope_change`` (relative); otherwise "no knee inside the sweep".
* **What is the highest load meeting the SLOs?** ("max sustainable load under SLO"). The highest load L
  such that the point at L *and every lower load* meets every SLO: a pass above a failure is luck or noise,
  and calling it sustainable would overstate capacity. Repeated points at one load must all pass.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.errors import HwbenchInputError

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}

#: An SLO on one sweep point: a predicate over its metrics, or ``(metric, op, bound)`` triples such as
#: ``("ttft_ms.p99", "<", 500)`` (all must hold). A metric missing from a point fails it.
SweepSLO = Callable[[Mapping[str, float]], bool] | Sequence[tuple[str, str, float]]


@dataclass(frozen=True)
class Knee:
    """Breakpoint of the two-segment fit. ``load`` is None when no significant slope change was found."""

    load: float | None
    nearest_load: float | None
    slope_before: float
    slope_after: float
    sse: float

    def to_dict(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {"load": num(self.load), "nearest_load": num(self.nearest_load),
                "slope_before": num(self.slope_before), "slope_after": num(self.slope_after)}


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line through (x, y): (slope, intercept, sse); a single x gives a flat line."""
    import numpy as np
    if len(x) == 1 or np.ptp(x) == 0:
        c = float(y.mean())
        return 0.0, c, float(((y - c) ** 2).sum())
    slope, intercept = np.polyfit(x, y, 1)
    sse = float(((y - (slope * x + intercept)) ** 2).sum())
    return float(slope), float(intercept), sse


def _hinge(x: np.ndarray, y: np.ndarray, b: float) -> tuple[float, float, float]:
    """Continuous two-segment fit with the breakpoint fixed at ``b``: (slope_before, slope_after, sse)."""
    import numpy as np
    a = np.column_stack([np.ones_like(x), np.minimum(x - b, 0.0), np.maximum(x - b, 0.0)])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    sse = float(((a @ coef - y) ** 2).sum())
    return float(coef[1]), float(coef[2]), sse


def find_knee(loads: Sequence[float], values: Sequence[float], *, min_slope_change: float = 0.5,
              min_points_per_side: int = 2) -> Knee:
    """Knee of ``values`` over ``loads`` (any order; repeated loads allowed). See the module doc.

    ``min_slope_change``: the knee must change the slope by at least this fraction of the larger slope
    (0.5 = the curve at least halves or doubles its slope).
    """
    import numpy as np
    x = np.asarray(loads, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise HwbenchInputError("loads and values must be equal-length sequences", field="sweep",
                                fix="give one value per load")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    distinct = np.unique(x)
    none = Knee(None, None, math.nan, math.nan, math.nan)
    if len(distinct) < 2 * min_points_per_side:
        return none
    best: tuple[float, float, float, float] | None = None  # (sse, b, s1, s2)
    for k in range(min_points_per_side, len(distinct) - min_points_per_side + 1):
        lo_x, hi_x = distinct[k - 1], distinct[k]
        left, right = x <= lo_x, x >= hi_x
        s1, c1, e1 = _line(x[left], y[left])
        s2, c2, e2 = _line(x[right], y[right])
        candidates: list[tuple[float, float, float, float]] = []
        if s1 != s2:
            cross = (c2 - c1) / (s1 - s2)
            if lo_x <= cross <= hi_x:
                candidates.append((e1 + e2, cross, s1, s2))
        if not candidates:
            for b in (lo_x, hi_x):
                t1, t2, e = _hinge(x, y, float(b))
                candidates.append((e, float(b), t1, t2))
        for cand in candidates:
            if best is None or cand[0] < best[0] - 1e-12:
                best = cand
    assert best is not None
    sse, b, s1, s2 = best
    scale = max(abs(s1), abs(s2))
    flat = np.ptp(y) <= 1e-9 * max(1.0, float(np.abs(y).max()))  # a constant curve has no knee
    if flat or scale == 0 or abs(s2 - s1) < min_slope_change * scale:
        return Knee(None, None, s1, s2, sse)
    nearest = float(distinct[np.argmin(np.abs(distinct - b))])
    return Knee(float(b), nearest, s1, s2, sse)


def _slo_predicate(slo: SweepSLO) -> Callable[[Mapping[str, float]], bool]:
    if callable(slo):
        return slo
    checks = []
    for item in slo:
        try:
            name, op, bound = item
            fn = _OPS[op]
            bound = float(bound)
        except (ValueError, TypeError, KeyError):
            raise HwbenchInputError(f"cannot read sweep SLO {item!r}", field="slo",
                                    fix="write (metric, op, bound) with op one of < <= > >=") from None
        checks.append((name, fn, bound))

    def predicate(point: Mapping[str, float]) -> bool:
        for name, fn, bound in checks:
            value = point.get(name)
            if value is None or not math.isfinite(float(value)) or not fn(float(value), bound):
                return False
        return True

    return predicate


@dataclass(frozen=True)
class SustainableLoad:
    """Highest load meeting the SLOs (contiguously from the lowest load), and where they first failed."""

    load: float | None
    first_failing_load: float | None
    passing: dict[float, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"load": self.load, "first_failing_load": self.first_failing_load,
                "passing": [[k, v] for k, v in sorted(self.passing.items())]}


def max_sustainable_load(loads: Sequence[float], points: Sequence[Mapping[str, float]],
                         slo: SweepSLO) -> SustainableLoad:
    """The highest load whose points, and all points at lower loads, meet ``slo`` (see the module doc)."""
    if len(loads) != len(points):
        raise HwbenchInputError("one metrics mapping per load is needed", field="sweep",
                                fix="pass loads and points of equal length")
    predicate = _slo_predicate(slo)
    by_load: dict[float, bool] = {}
    for load, point in zip(loads, points, strict=True):
        ok = bool(predicate(point))
        by_load[float(load)] = by_load.get(float(load), True) and ok
    best = first_fail = None
    for load in sorted(by_load):
        if not by_load[load]:
            first_fail = load
            break
        best = load
    return SustainableLoad(load=best, first_failing_load=first_fail, passing=by_load)


@dataclass(frozen=True)
class SweepAnalysis:
    """Knee of throughput (and of latency, when asked) and the max sustainable load of one sweep."""

    throughput_knee: Knee
    latency_knee: Knee | None
    sustainable: SustainableLoad | None

    def to_dict(self) -> dict[str, Any]:
        return {"throughput_knee": self.throughput_knee.to_dict(),
                "latency_knee": None if self.latency_knee is None else self.latency_knee.to_dict(),
                "max_sustainable": None if self.sustainable is None else self.sustainable.to_dict()}


def analyze_sweep(loads: Sequence[float], points: Sequence[Mapping[str, float]], *,
                  throughput: str = "req_s", latency: str | None = None, slo: SweepSLO | None = None,
                  min_slope_change: float = 0.5) -> SweepAnalysis:
    """Everything a sweep report needs, from per-point metric mappings (e.g. ``{"req_s": .., "ttft_ms.p99": ..}``)."""
    def column(name: str) -> list[float]:
        return [float(p.get(name, math.nan)) for p in points]

    tput = find_knee(loads, column(throughput), min_slope_change=min_slope_change)
    lat = find_knee(loads, column(latency), min_slope_change=min_slope_change) if latency else None
    sus = max_sustainable_load(loads, points, slo) if slo is not None else None
    return SweepAnalysis(throughput_knee=tput, latency_knee=lat, sustainable=sus)
