"""What every resource source has in common, and the timeline they fill.

Why sources compute their own rates: each one reads cumulative counters (CPU time, bytes, busy time) and
keeps its previous reading with the instant it took it, so a rate is always "since my previous reading",
whatever the sampling thread's jitter. A source returns flat ``name -> float`` values; the names are the
series of the timeline and, for the summarised ones, the metric names (``measure.samplers.metrics``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


class Source(Protocol):
    """One thing sampled: the host, a process tree, a cgroup, the GPUs."""

    name: str

    def prime(self) -> None:
        """Read the counters once, so the next ``sample`` has something to diff against."""

    def sample(self) -> dict[str, float]:
        """Values over the interval since the previous reading (rates, utilisations) and levels (memory)."""

    def close(self) -> None:
        """Release what the source holds (NVML handles)."""


def now_ns() -> int:
    """The sampler's clock: ``perf_counter_ns`` (CLOCK_MONOTONIC on Linux), the clock the load engine stamps
    requests with, so a measured window given as request instants lines up with the ticks."""
    return time.perf_counter_ns()


def rate(new: float, old: float, dt_s: float) -> float:
    """Counter increase per second; a counter that went backwards (reset, wrapped) counts as 0."""
    return max(new - old, 0.0) / dt_s if dt_s > 0 else 0.0


@dataclass
class Timeline:
    """The ticks of one trial: tick ``i`` covers ``(t_ns[i] - dt_ns[i], t_ns[i]]``; each series has one value
    per tick (NaN where a source had nothing to say at that tick)."""

    interval_s: float
    t_ns: list[int] = field(default_factory=list)
    dt_ns: list[int] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t_ns)

    def add(self, t_ns: int, dt_ns: int, values: dict[str, float]) -> None:
        n = len(self.t_ns)
        for name, value in values.items():
            column = self.series.get(name)
            if column is None:
                column = self.series[name] = [math.nan] * n
            column.append(float(value))
        self.t_ns.append(t_ns)
        self.dt_ns.append(dt_ns)
        for column in self.series.values():
            if len(column) < n + 1:
                column.append(math.nan)

    def within(self, windows: list[tuple[int, int]]) -> Timeline:
        """The ticks whose interval midpoint lies in one of ``windows`` (``(start_ns, end_ns)``)."""
        keep = [i for i, (t, dt) in enumerate(zip(self.t_ns, self.dt_ns, strict=True))
                if any(a <= t - dt // 2 <= b for a, b in windows)]
        out = Timeline(self.interval_s, [self.t_ns[i] for i in keep], [self.dt_ns[i] for i in keep])
        out.series = {name: [col[i] for i in keep] for name, col in self.series.items()}
        return out

    def values(self, name: str) -> list[float]:
        """The finite values of one series (empty when it was never sampled)."""
        return [v for v in self.series.get(name, []) if math.isfinite(v)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (NaN as None), to travel from an xdist worker with the test's payload."""
        return {"interval_s": self.interval_s, "t_ns": list(self.t_ns), "dt_ns": list(self.dt_ns),
                "series": {k: [v if math.isfinite(v) else None for v in col] for k, col in self.series.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        out = cls(float(data.get("interval_s", 0.0)), [int(t) for t in data.get("t_ns", [])],
                  [int(t) for t in data.get("dt_ns", [])])
        out.series = {k: [math.nan if v is None else float(v) for v in col]
                      for k, col in (data.get("series") or {}).items()}
        return out
