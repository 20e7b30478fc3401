"""Metrics as recorded by a test, and their plain-data results that travel to the controller.

A ``Metric`` lives in the ``hwbench`` fixture while the test runs: samples are kept per trial (repetition)
as numpy arrays. ``MetricResult`` is what comes out: summary of the pooled samples plus one value per trial
(the trial's median), which is the evidence the baseline comparison resamples (DESIGN.md, Verdicts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pytest_hwbench.measure.stats import Summary, summarize

Better = Literal["lower", "higher"]


def infer_better(unit: str) -> Better:
    """Direction when the test does not say: a rate (unit with ``/``, e.g. ``GB/s``, ``tok/s``, ``req/s``)
    is better higher; everything else (times, sizes, error rates) is better lower."""
    return "higher" if "/" in unit else "lower"


@dataclass
class Metric:
    """One named metric recorded by a test, with its samples split by trial."""

    name: str
    unit: str = ""
    better: Better = "lower"
    estimated: bool = False
    trials: list[list[np.ndarray]] = field(default_factory=list)

    def add(self, values: np.ndarray, trial: int) -> None:
        """Append finite float64 ``values`` to trial number ``trial`` (0-based)."""
        while len(self.trials) <= trial:
            self.trials.append([])
        self.trials[trial].append(values)

    def samples(self) -> np.ndarray:
        """All samples of all trials, pooled, in recording order."""
        chunks = [c for t in self.trials for c in t]
        if not chunks:
            return np.empty(0, dtype=np.float64)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def trial_values(self) -> list[float]:
        """One value per non-empty trial: the median of that trial's samples."""
        out = []
        for t in self.trials:
            if t:
                arr = t[0] if len(t) == 1 else np.concatenate(t)
                out.append(float(np.median(arr)))
        return out

    def result(self, confidence: float = 0.95) -> MetricResult:
        return MetricResult(name=self.name, unit=self.unit, better=self.better, estimated=self.estimated,
                            summary=summarize(self.samples(), confidence),
                            trial_values=self.trial_values())


@dataclass
class MetricResult:
    """Plain-data result of one metric: what verdicts read and what reports, baselines and MLflow store."""

    name: str
    unit: str
    better: Better
    summary: Summary
    trial_values: list[float]
    estimated: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "better": self.better, "estimated": self.estimated,
                "trial_values": [jsonable(v) for v in self.trial_values], "summary": self.summary.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> MetricResult:
        return cls(name=data["name"], unit=data.get("unit", ""), better=data.get("better", "lower"),
                   estimated=bool(data.get("estimated", False)),
                   summary=Summary.from_dict(data["summary"]),
                   trial_values=[float("nan") if v is None else float(v) for v in data["trial_values"]])


def jsonable(value: float | int | None) -> float | int | None:
    """A number as a plain JSON value: nan and infinities become None (JSON has no NaN)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    f = float(value)
    return f if math.isfinite(f) else None
