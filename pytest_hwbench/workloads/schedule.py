"""Open-loop arrival schedules: when each request is *meant* to be sent.

Why precompute the whole schedule as an array of offsets instead of drawing gaps as the run goes: the
schedule is then a pure function of (process, rate, seed, bounds), identical across re-runs and across a
split into worker processes (the parent draws it once and deals it out), and "intended send" is known for
every request before the run — which is what makes latency_from_intended free of coordinated omission.

Processes (``rate`` in requests per second, first arrival at offset 0):

* ``constant`` — gaps exactly ``1/rate``.
* ``poisson`` — exponential gaps with mean ``1/rate`` (memoryless arrivals of many independent users).
* ``gamma`` — gamma gaps with shape ``burstiness`` and scale ``1/(rate*burstiness)``: the mean gap stays
  ``1/rate`` whatever the burstiness, the coefficient of variation is ``1/sqrt(burstiness)``. ``burstiness=1``
  is Poisson, ``< 1`` is burstier (clumps and lulls), ``> 1`` is smoother, tending to constant. This is the
  parametrisation vLLM's benchmark uses, so numbers are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pytest_hwbench.errors import HwbenchInputError

ArrivalKind = Literal["constant", "poisson", "gamma"]
_KINDS = ("constant", "poisson", "gamma")


@dataclass(frozen=True)
class ArrivalProcess:
    """An arrival process: kind, mean rate (req/s) and, for ``gamma``, a burstiness factor."""

    kind: ArrivalKind = "poisson"
    rate: float = 1.0
    burstiness: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise HwbenchInputError(f"unknown arrival process {self.kind!r}", field="arrival.kind",
                                    fix=f"use one of {', '.join(_KINDS)}")
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise HwbenchInputError(f"rate must be a positive number of requests/s, got {self.rate!r}",
                                    field="arrival.rate", fix="give a rate > 0")
        if not (self.burstiness > 0 and np.isfinite(self.burstiness)):
            raise HwbenchInputError(f"burstiness must be > 0, got {self.burstiness!r}",
                                    field="arrival.burstiness", fix="1 = Poisson, <1 burstier, >1 smoother")

    def gaps_s(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` inter-arrival gaps in seconds."""
        if self.kind == "constant":
            return np.full(n, 1.0 / self.rate)
        if self.kind == "poisson":
            return rng.exponential(1.0 / self.rate, n)
        return rng.gamma(self.burstiness, 1.0 / (self.rate * self.burstiness), n)

    def offsets_ns(self, *, count: int | None = None, duration_s: float | None = None,
                   rng: np.random.Generator | None = None, seed: int = 0) -> np.ndarray:
        """Arrival offsets from the run start in integer ns (int64, non-decreasing, first is 0).

        Bounded by ``count`` arrivals and/or by ``duration_s`` (offset strictly below it); at least one bound
        is required. ``rng`` wins over ``seed`` when both are given.
        """
        if count is None and duration_s is None:
            raise HwbenchInputError("an arrival schedule needs a request count or a duration",
                                    field="requests/duration_s", fix="give requests=N or duration_s=T")
        rng = rng if rng is not None else np.random.default_rng(seed)
        if count is not None and count <= 0:
            return np.zeros(0, dtype=np.int64)
        if duration_s is not None and duration_s <= 0:
            return np.zeros(0, dtype=np.int64)
        limit_ns = None if duration_s is None else round(duration_s * 1e9)
        if self.kind == "constant":  # exact multiples: no float drift over long schedules
            n = count if limit_ns is None else math.ceil(duration_s * self.rate) + 1  # type: ignore[operator]
            assert n is not None  # no duration means a count (checked above)
            if count is not None:
                n = min(n, count)
            out = np.round(np.arange(n, dtype=np.float64) * (1e9 / self.rate)).astype(np.int64)
            return out if limit_ns is None else out[out < limit_ns]
        limit = np.inf if duration_s is None else duration_s
        expected = int(limit * self.rate * 1.2) + 64 if duration_s is not None else None
        block = max(1, min(x for x in (count, expected) if x is not None))
        blocks: list[np.ndarray] = []
        total = 0
        last = 0.0
        while True:
            gaps = self.gaps_s(block, rng)
            if not blocks:
                gaps[0] = 0.0  # the first arrival opens the run
            times = last + np.cumsum(gaps)
            blocks.append(times)
            total += len(times)
            last = float(times[-1])
            if (count is not None and total >= count) or last >= limit:
                break
        out = np.round(np.concatenate(blocks) * 1e9).astype(np.int64)
        if count is not None:
            out = out[:count]
        return out if limit_ns is None else out[out < limit_ns]


@dataclass(frozen=True)
class OpenSchedule:
    """A concrete open-loop schedule: offsets of all arrivals, the first ``warmup`` of which are warm-up."""

    offsets_ns: np.ndarray
    warmup: int

    @property
    def measured(self) -> int:
        return len(self.offsets_ns) - self.warmup


def build_open_schedule(process: ArrivalProcess, *, requests: int | None, duration_s: float | None,
                        warmup_requests: int = 0, seed: int = 0) -> OpenSchedule:
    """Warm-up arrivals followed by the measured ones, drawn from one continuous process.

    The measured part is bounded by ``requests`` and/or by ``duration_s`` counted from the first measured
    arrival, so the warm-up never eats into the measured duration.
    """
    rng = np.random.default_rng(seed)
    warm = process.offsets_ns(count=warmup_requests, rng=rng) if warmup_requests > 0 else np.zeros(0, np.int64)
    # the gap from the last warm-up arrival to the first measured one follows the same process
    start = int(warm[-1]) + round(float(process.gaps_s(1, rng)[0]) * 1e9) if warmup_requests > 0 else 0
    measured = process.offsets_ns(count=requests, duration_s=duration_s, rng=rng) + start
    return OpenSchedule(offsets_ns=np.concatenate([warm, measured]).astype(np.int64), warmup=len(warm))
