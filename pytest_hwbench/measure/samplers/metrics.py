"""Resource metrics: the one definition of each, how a trial's timeline becomes them, and the run summary.

Each metric's samples are the per-tick values of its series during the measured window, so every statistic
an SLO can name works on them: ``service_rss_mb.max < 4096``, ``host_cpu_util.mean < 90``,
``gpu_util.p50 > 80``. They are recorded like any benchmark metric; baselines compare them only when the
recipe lists them under ``baseline.metrics`` (a change in CPU or memory use is worth gating on only when a
team says so; by default it is evidence, not a verdict).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.measure.samplers.base import Timeline


@dataclass(frozen=True)
class ResourceMetric:
    name: str
    unit: str
    better: str
    meaning: str


#: Metrics recorded from the timelines (series of the same name). Per-service variants for a test's second
#: and later services are named ``service_<name>_...`` with the same definition.
RESOURCE_METRICS: dict[str, ResourceMetric] = {m.name: m for m in (
    ResourceMetric("host_cpu_util", "%", "lower", "CPU busy, mean over all cores (100 = every core busy)"),
    ResourceMetric("host_mem_used_pct", "%", "lower", "memory in use (100 - available), % of RAM"),
    ResourceMetric("disk_busy_pct", "%", "lower", "time the busiest disk had I/O in flight"),
    ResourceMetric("service_cpu_util", "%", "lower", "CPU used by the service's process tree (100 = one core)"),
    ResourceMetric("service_rss_mb", "MB", "lower", "resident memory of the service's process tree"),
    ResourceMetric("service_hot_thread_pct", "%", "lower",
                   "CPU demand of the service's busiest thread: on a CPU or waiting for one, % of wall time"),
    ResourceMetric("container_cpu_util", "%", "lower", "CPU used by the service's container cgroup (100 = one core)"),
    ResourceMetric("container_mem_mb", "MB", "lower", "memory of the service's container, less inactive cache"),
    ResourceMetric("loadgen_cpu_util", "%", "lower",
                   "CPU used by the load generator (this process and its workers, services excluded)"),
    ResourceMetric("loadgen_hot_thread_pct", "%", "lower", "CPU demand of the load generator's busiest thread"),
    ResourceMetric("gpu_util", "%", "lower", "time the busiest GPU was executing kernels"),
    ResourceMetric("gpu_mem_mb", "MB", "lower", "GPU memory in use, all GPUs"),
    ResourceMetric("gpu_power_w", "W", "lower", "GPU power draw, all GPUs"),
)}

_SERVICE_VARIANT = re.compile(r"^service_[A-Za-z0-9]+_(cpu_util|rss_mb|hot_thread_pct)$")
_PER_UNIT = re.compile(r"^(host_cpu_core\d+|gpu\d+_util)$")


def definition(name: str) -> ResourceMetric | None:
    """The definition of a resource metric, including per-service variants; None for anything else."""
    if name in RESOURCE_METRICS:
        return RESOURCE_METRICS[name]
    m = _SERVICE_VARIANT.match(name)
    if m:
        base = RESOURCE_METRICS[f"service_{m.group(1)}"]
        return ResourceMetric(name, base.unit, base.better, base.meaning)
    return None


def is_resource_metric(name: str) -> bool:
    """A resource metric, or a stored timeline (``resource.<series>`` in the raw samples)."""
    return name.startswith("resource.") or definition(name) is not None


def trial_metrics(timeline: Timeline) -> list[tuple[ResourceMetric, np.ndarray]]:
    """The resource metrics of one trial: each defined series' finite per-tick values."""
    out = []
    for name in timeline.series:
        d = definition(name)
        values = timeline.values(name)
        if d is not None and len(values):
            import numpy as np  # here: a trial without a reading (a trivial test's) needs no numpy

            out.append((d, np.asarray(values, dtype=np.float64)))
    return out


def summarize_series(timelines: list[Timeline]) -> dict[str, dict[str, float | None]]:
    """Per series over every measured tick of the test: mean, p50, p95, min, max, first, last and the slope
    (units per second, least squares over time), which is how memory growth shows."""
    out: dict[str, dict[str, float | None]] = {}
    names = sorted({n for tl in timelines for n in tl.series if not _PER_UNIT.match(n)})
    t0 = min((tl.t_ns[0] for tl in timelines if tl.t_ns), default=0)
    for name in names:
        ts, vs = [], []
        for tl in timelines:
            for t, v in zip(tl.t_ns, tl.series.get(name, []), strict=False):
                if math.isfinite(v):
                    ts.append((t - t0) / 1e9)
                    vs.append(v)
        if not vs:
            continue
        import numpy as np  # here: a test with no reading (a trivial one) needs no numpy

        arr = np.asarray(vs)
        slope = None
        if len(vs) >= 3 and max(ts) - min(ts) > 0:
            slope = float(np.polyfit(np.asarray(ts), arr, 1)[0])
        out[name] = {"mean": float(arr.mean()), "p50": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
                     "min": float(arr.min()),
                     "max": float(arr.max()), "first": vs[0], "last": vs[-1], "slope_per_s": slope,
                     "span_s": float(max(ts) - min(ts)), "n": len(vs)}
    return out


def timeline_arrays(timelines: list[Timeline]) -> dict[str, np.ndarray]:
    """Every trial's timeline as flat arrays for the raw-samples file: ``resource.t_s`` (seconds since the
    first tick), ``resource.trial`` (measured trial index) and ``resource.<series>``."""
    if not any(len(tl) for tl in timelines):
        return {}
    import numpy as np

    t0 = min(tl.t_ns[0] for tl in timelines if tl.t_ns)
    names = sorted({n for tl in timelines for n in tl.series})
    out: dict[str, list[float]] = {"resource.t_s": [], "resource.trial": [], **{f"resource.{n}": [] for n in names}}
    for i, tl in enumerate(timelines):
        out["resource.t_s"] += [(t - t0) / 1e9 for t in tl.t_ns]
        out["resource.trial"] += [float(i)] * len(tl)
        for n in names:
            out[f"resource.{n}"] += tl.series.get(n, [math.nan] * len(tl))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def resources_payload(monitor: Any) -> dict[str, Any] | None:
    """What results.json keeps of a test's sampling (a ``ResourceMonitor``): the interval, tick count, the
    sampled services, per-series summary and notes; the timelines travel under ``timelines`` and are
    written with the raw samples (``timeline_arrays``). None when nothing was sampled."""
    if monitor is None or not monitor.timelines:
        return None
    timelines, notes = monitor.timelines, monitor.notes
    return {"interval_s": monitor.interval_s, "ticks": sum(len(tl) for tl in timelines),
            "services": [t.name for t in monitor.targets or []],
            "series": summarize_series(timelines), "notes": list(notes),
            "timelines": [tl.to_dict() for tl in timelines]}


def pop_timelines(payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """Take the timelines out of a result payload (they do not belong in results.json) as raw-sample arrays."""
    resources = payload.get("resources") or {}
    raw = resources.pop("timelines", None) or []
    return timeline_arrays([Timeline.from_dict(t) for t in raw])
