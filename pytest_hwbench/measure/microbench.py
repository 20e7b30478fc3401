"""Timing a short function properly: calibrated iterations per round, warm-up, every round recorded.

Why: one call per trial, three trials, reads a 14 µs function 30-90 % high (the first calls pay cold caches,
lazy imports and the interpreter's specialisation; three samples say nothing about spread), and a call
shorter than a few hundred ns is below what one ``perf_counter_ns`` reading can resolve. This is the method
pytest-benchmark uses, which our users already trust, with the thresholds stated in terms of the timer:

1. **Timer**: ``time.perf_counter_ns``. Its *resolution* (smallest step seen between two readings) and its
   *overhead* (cost of one reading, the median of many back-to-back pairs) are measured once per process.
2. **Calibration**: a *round* is ``iterations`` back-to-back calls between two timer readings. Iterations
   grow (x10, then a direct estimate) until one round lasts at least ``min_round_s``, at least 100 x the
   resolution and 100 x the overhead, so neither can bias a round by more than 1 %. A function slower than
   that runs once per round (the calibration call then doubles as the warm-up).
3. **Warm-up**: rounds are run and thrown away for ``warmup_s`` (default 10 % of the budget, at most
   0.1 s), so caches, branch predictors and the interpreter's specialised bytecode are warm. The
   calibration rounds ran cold, so iterations are re-estimated from the fastest warm round (a cold first
   call of a ~500 ns function can take several µs and would otherwise leave rounds far below the target).
4. **Rounds**: rounds run until ``max_time_s`` has passed and at least ``min_rounds`` were taken (or exactly
   ``rounds`` when given). Every round is a sample: its duration divided by ``iterations``.

Samples go into an ``array('d')`` as they are taken (no per-sample object), so 100,000 rounds cost memory
for 100,000 floats and nothing else.
"""

from __future__ import annotations

import gc
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_perf = time.perf_counter_ns


@dataclass(frozen=True)
class TimerInfo:
    """The timer's resolution and the cost of one reading, in ns."""

    resolution_ns: float
    overhead_ns: float


_TIMER: TimerInfo | None = None


def timer_info() -> TimerInfo:
    """Measure ``perf_counter_ns`` once per process: its smallest step, and the median cost of a reading."""
    global _TIMER
    if _TIMER is None:
        step = math.inf
        for _ in range(200):  # smallest non-zero difference between consecutive readings
            t0 = _perf()
            t1 = _perf()
            while t1 == t0:
                t1 = _perf()
            step = min(step, t1 - t0)
        pairs = []
        for _ in range(501):
            t0 = _perf()
            t1 = _perf()
            pairs.append(t1 - t0)
        pairs.sort()
        _TIMER = TimerInfo(resolution_ns=float(step), overhead_ns=float(pairs[len(pairs) // 2]))
    return _TIMER


@dataclass
class Calibration:
    """How a function was timed: what a report needs to judge the samples."""

    iterations: int
    rounds: int
    warmup_rounds: int
    round_target_ns: float
    timer_resolution_ns: float
    timer_overhead_ns: float
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "rounds": self.rounds, "warmup_rounds": self.warmup_rounds,
                "round_target_ns": self.round_target_ns, "timer_resolution_ns": self.timer_resolution_ns,
                "timer_overhead_ns": self.timer_overhead_ns, "total_s": self.total_s}


def _round(fn: Callable[..., Any], args: tuple, kwargs: dict, iterations: int) -> tuple[int, Any]:
    """One round: ``iterations`` calls between two timer readings; (elapsed ns, last result)."""
    result = None
    if iterations == 1:
        t0 = _perf()
        result = fn(*args, **kwargs)
        return _perf() - t0, result
    loops = range(iterations)
    t0 = _perf()
    for _ in loops:
        result = fn(*args, **kwargs)
    return _perf() - t0, result


def _target_ns(info: TimerInfo, min_round_s: float) -> float:
    """The shortest round: ``min_round_s`` and 100 x the timer's resolution and overhead (each <= 1 %)."""
    return max(min_round_s * 1e9, 100 * info.resolution_ns, 100 * info.overhead_ns)


def calibrate(fn: Callable[..., Any], args: tuple, kwargs: dict, *, min_round_s: float) -> tuple[int, int]:
    """Iterations per round so that a round lasts at least the target; returns (iterations, last round ns)."""
    info = timer_info()
    target = _target_ns(info, min_round_s)
    iterations = 1
    while True:
        elapsed, _ = _round(fn, args, kwargs, iterations)
        if elapsed >= target:
            return iterations, elapsed
        if elapsed * 10 >= target and elapsed > 0:  # close: estimate directly
            iterations = max(iterations + 1, math.ceil(target * iterations / elapsed))
        else:
            iterations *= 10


def run_rounds(fn: Callable[..., Any], args: tuple, kwargs: dict, *, rounds: int | None = None,
               iterations: int | None = None, max_time_s: float = 1.0, min_rounds: int = 5,
               warmup: bool | float = True, min_round_s: float = 5e-6,
               disable_gc: bool = False) -> tuple[array, Calibration, Any]:
    """Time ``fn(*args, **kwargs)``: (seconds per call of every round, how it was timed, last result).

    ``rounds`` and ``iterations`` fix what calibration would choose; ``warmup`` is a bool or the warm-up
    time in seconds; ``disable_gc`` turns the cyclic garbage collector off while timing (a collection that
    lands in one round is a real cost of allocating code, so it stays on by default, as in pytest-benchmark).
    """
    if rounds is not None and rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not max_time_s > 0 or min_rounds < 1:
        raise ValueError("max_time_s must be > 0 and min_rounds >= 1")
    info = timer_info()
    start = _perf()
    gc_was = gc.isenabled()
    if disable_gc:
        gc.disable()
    try:
        first_ns = 0
        calibrated = iterations is None
        if iterations is None:
            iterations, first_ns = calibrate(fn, args, kwargs, min_round_s=min_round_s)
        warm_s = (min(0.1, max_time_s / 10) if warmup is True else float(warmup or 0.0))
        warm_rounds = 0
        result: Any = None
        if warm_s > 0 and first_ns < warm_s * 1e9:  # a slow function: its calibration call was the warm-up
            end = _perf() + int(warm_s * 1e9)
            fastest = math.inf
            while True:
                elapsed, result = _round(fn, args, kwargs, iterations)
                fastest = min(fastest, elapsed)
                warm_rounds += 1
                if _perf() >= end:
                    break
            if calibrated and warm_rounds >= 3 and fastest > 0:
                # The calibration rounds ran cold (first calls, unspecialised bytecode), so they can
                # read a ~1 µs call as several µs and choose too few iterations; re-estimate from the
                # fastest warm round, never going below the calibrated count.
                iterations = max(iterations, math.ceil(_target_ns(info, min_round_s) * iterations / fastest))
        out = array("d")
        append = out.append
        scale = 1e-9 / iterations
        budget = int(max_time_s * 1e9)
        began = _perf()
        taken = 0
        while True:
            elapsed, result = _round(fn, args, kwargs, iterations)
            append(elapsed * scale)
            taken += 1
            if rounds is not None:
                if taken >= rounds:
                    break
            elif taken >= min_rounds and _perf() - began >= budget:
                break
    finally:
        if disable_gc and gc_was:
            gc.enable()
    cal = Calibration(iterations=iterations, rounds=taken, warmup_rounds=warm_rounds,
                      round_target_ns=_target_ns(info, min_round_s),
                      timer_resolution_ns=info.resolution_ns, timer_overhead_ns=info.overhead_ns,
                      total_s=(_perf() - start) / 1e9)
    return out, cal, result
