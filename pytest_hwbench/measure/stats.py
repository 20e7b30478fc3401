"""Statistics over raw samples: the pinned summary (DESIGN.md) and the confidence intervals.

INTERFACE STUB — implemented by the stats work item. Signatures and semantics below are the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Percentiles every summary carries, as (stat name, percent).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9),
)
#: Every statistic name an SLO may use. ``median`` is an alias of ``p50``.
STAT_NAMES: tuple[str, ...] = ("count", "mean", "stdev", "cv", "min", "max", "median",
                               *(name for name, _ in PERCENTILES))


@dataclass(frozen=True)
class Summary:
    """Summary of one metric's pooled samples.

    ``ci`` maps a stat name (``mean`` and each percentile name) to its (low, high) confidence interval at
    ``confidence``. Undefined values (stdev of one sample, CV with mean 0) are ``nan``.
    """

    count: int
    mean: float
    stdev: float
    cv: float
    min: float
    max: float
    percentiles: dict[str, float]
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    confidence: float = 0.95

    def stat(self, name: str) -> float:
        """Value of a stat by name (one of STAT_NAMES); raises KeyError for unknown names."""
        raise NotImplementedError

    def ci_of(self, name: str) -> tuple[float, float] | None:
        """CI of a stat by name (``median`` maps to ``p50``), or None when the stat has none."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Plain JSON types; nan/inf become None. Keys: count, mean, stdev, cv, min, max, p50..p99.9,
        ci {name: [lo, hi]}, confidence."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict) -> Summary:
        """Inverse of to_dict (None back to nan)."""
        raise NotImplementedError


def summarize(samples: np.ndarray | Sequence[float], confidence: float = 0.95) -> Summary:
    """Summarise raw samples (non-empty, finite). Percentiles use numpy's default (linear) method."""
    raise NotImplementedError


def bootstrap_ratio_of_medians(current: Sequence[float], baseline: Sequence[float], *,
                               confidence: float = 0.95, resamples: int = 2000,
                               seed: int = 0) -> tuple[float, float, float]:
    """Ratio median(current)/median(baseline) with a percentile-bootstrap CI: (point, low, high).

    Each side is resampled independently with replacement; seeded, so the same inputs give the same CI.
    """
    raise NotImplementedError
