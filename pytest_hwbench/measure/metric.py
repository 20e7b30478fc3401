"""Metrics as recorded by a test, and their plain-data results that travel to the controller.

A ``Metric`` lives in the ``hwbench`` fixture while the test runs: samples are kept per trial (repetition)
in one growable ``array('d')`` each (a value appended costs a few hundred ns; a numpy array per value cost
~4 µs and a pointer per sample), turned into numpy once when the test is summarised. A metric with one value in
all is summarised without numpy, which is then not imported at all (~50 ms and ~7,000 objects that every full
garbage collection scans, in a run of one-value tests; issue #14).
``MetricResult`` is what comes out: summary of the pooled samples plus one value per trial (the trial's
median), which is the evidence the baseline comparison resamples (docs/verdicts.md).
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass, field
from numbers import Integral
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
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
    trials: list[array] = field(default_factory=list)

    def add(self, values: np.ndarray | float, trial: int) -> None:
        """Append finite float64 ``values`` (an array, or one float) to trial number ``trial`` (0-based)."""
        while len(self.trials) <= trial:
            self.trials.append(array("d"))
        if isinstance(values, float):
            self.trials[trial].append(values)
        else:
            import numpy as np

            self.trials[trial].frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())

    def trial_samples(self, trial: int) -> np.ndarray:
        """The samples of one trial as a read-only float64 view (no copy)."""
        import numpy as np
        buf = self.trials[trial]
        view = np.frombuffer(buf, dtype=np.float64) if len(buf) else np.empty(0, dtype=np.float64)
        view.flags.writeable = False
        return view

    def samples(self) -> np.ndarray:
        """All samples of all trials, pooled, in recording order (a new array)."""
        import numpy as np
        chunks = [self.trial_samples(i) for i, t in enumerate(self.trials) if len(t)]
        if not chunks:
            return np.empty(0, dtype=np.float64)
        return chunks[0].copy() if len(chunks) == 1 else np.concatenate(chunks)

    def trial_values(self) -> list[float]:
        """One value per non-empty trial: the median of that trial's samples (a one-sample trial's value
        itself, without ``np.median``'s ~0.1 ms of dispatch or numpy's import: most measuring tests record one
        value a trial)."""
        return [t[0] if len(t) == 1 else _median(self.trial_samples(i)) for i, t in enumerate(self.trials) if len(t)]

    def result(self, confidence: float = 0.95) -> MetricResult:
        # One value in all (a trivial measuring test): summarised straight from it, no numpy round trip.
        only = [t for t in self.trials if len(t)]
        pooled = [only[0][0]] if len(only) == 1 and len(only[0]) == 1 else self.samples()
        return MetricResult(name=self.name, unit=self.unit, better=self.better, estimated=self.estimated,
                            summary=summarize(pooled, confidence), trial_values=self.trial_values())

    def sample_bytes(self) -> bytes:
        """All samples, pooled in recording order, as little-endian float64 bytes (what ``samples.bin``
        holds), straight from the per-trial buffers."""
        data = b"".join(t.tobytes() for t in self.trials)
        if sys.byteorder == "little":
            return data
        swapped = array("d", data)
        swapped.byteswap()
        return swapped.tobytes()


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


def _median(values: np.ndarray) -> float:
    import numpy as np

    return float(np.median(values))


def jsonable(value: float | int | None) -> float | int | None:
    """A number as a plain JSON value: nan and infinities become None (JSON has no NaN). numpy's integers
    are ``numbers.Integral`` (numpy registers them), so this needs no numpy import."""
    if value is None:
        return None
    if type(value) is not float and isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    f = float(value)
    return f if math.isfinite(f) else None
