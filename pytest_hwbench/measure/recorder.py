"""The ``hwbench`` fixture object: where a test records its measurements.

The plugin calls the test body once per trial (``warmup`` discarded trials, then ``repetitions`` measured
ones, docs/verdicts.md: evidence is repeated trials), so a test records each metric once per call and
the recorder files the values under the current trial (float64 buffers per trial, ``measure/metric.py``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import Better, Metric, MetricResult, infer_better
from pytest_hwbench.measure.microbench import run_rounds
from pytest_hwbench.recipe.workload_settings import WorkloadSettings

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

    from pytest_hwbench.measure.samplers.monitor import ResourceMonitor

T = TypeVar("T")

_TIME_UNITS: dict[str, float] = {"s": 1e-9, "ms": 1e-6, "us": 1e-3, "ns": 1.0}


class Timer:
    """Times a block with ``time.perf_counter_ns`` and records the elapsed time on exit.

    Works as ``with`` and ``async with`` so async benchmarks time awaited work the same way. A block that
    raises records nothing: a failed operation is not a latency sample.
    """

    def __init__(self, recorder: Recorder, name: str, unit: str) -> None:
        if unit not in _TIME_UNITS:
            raise ValueError(f"timer unit must be one of {', '.join(_TIME_UNITS)}, got {unit!r}")
        self._recorder, self._name, self._unit = recorder, name, unit
        self._start = 0
        self.elapsed: float | None = None

    def __enter__(self) -> Timer:
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stop = time.perf_counter_ns()
        if exc_type is None:
            self.elapsed = (stop - self._start) * _TIME_UNITS[self._unit]
            self._recorder.record(self._name, self.elapsed, unit=self._unit, better="lower")

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)


class Recorder:
    """Records named metrics (unit, direction, samples per trial) for one test.

    Attributes a test may read: ``test_id``, ``params`` (this test's parameters), ``recipe`` (the loaded
    recipe), ``settings`` (the recipe's free-form ``settings`` mapping), ``workloads`` (the shipped
    workloads' settings, checked and typed when the recipe loaded: ``hwbench.workloads.redis.keyspace``),
    ``trial`` (current trial index;
    -1 during warm-up), ``is_warmup``.
    """

    def __init__(self, test_id: str, *, params: Mapping[str, Any] | None = None, recipe: Any = None,
                 confidence: float = 0.95) -> None:
        self.test_id = test_id
        self.params: dict[str, Any] = dict(params or {})
        self.recipe = recipe
        self.settings: dict[str, Any] = dict(getattr(recipe, "settings", {}) or {})
        self.workloads: WorkloadSettings = getattr(recipe, "workloads", None) or WorkloadSettings()
        self.confidence = confidence
        self.metrics: dict[str, Metric] = {}
        self.trial = 0
        self.is_warmup = False
        self.extra: dict[str, Any] = {}
        self.invalid: list[str] = []
        #: Resource sampling (``measure.samplers``), set by the plugin; None when disabled.
        self.monitor: ResourceMonitor | None = None

    # -- trial bookkeeping (called by the plugin) ------------------------------------------------------
    def begin_trial(self, index: int, *, warmup: bool = False) -> None:
        """Route following records to trial ``index``, or discard them when ``warmup``; measured trials
        start resource sampling (ended by :meth:`end_trial` or the next ``begin_trial``)."""
        self.end_trial()
        self.trial = -1 if warmup else index
        self.is_warmup = warmup
        if self.monitor is not None and not warmup:
            self.monitor.begin_trial()

    def end_trial(self) -> None:
        """Stop the trial's resource sampling and record its resource metrics into the trial."""
        timeline = self.monitor.end_trial() if self.monitor is not None else None
        if timeline is not None and not self.is_warmup:
            from pytest_hwbench.measure.samplers.metrics import trial_metrics

            for d, values in trial_metrics(timeline):
                self.record(d.name, values, unit=d.unit, better=d.better)  # type: ignore[arg-type]

    def measured_window(self) -> contextlib.AbstractContextManager[None]:
        """``with hwbench.measured_window():`` around the measured phase of a trial (not seeding, not
        warm-up requests): resource figures then cover only that block."""
        return self.monitor.window() if self.monitor is not None else contextlib.nullcontext()

    def mark_measured(self, start_ns: int, end_ns: int) -> None:
        """Mark ``[start_ns, end_ns]`` (``time.perf_counter_ns`` instants) as this trial's measured phase,
        after the fact (the load engine does this with its first measured send and last answer)."""
        if self.monitor is not None:
            self.monitor.mark(start_ns, end_ns)

    @property
    def trial_count(self) -> int:
        return max((len(m.trials) for m in self.metrics.values()), default=0)

    # -- recording -------------------------------------------------------------------------------------
    def record(self, name: str, value: float | Iterable[float] | np.ndarray, *, unit: str = "",
               better: Better | None = None, estimated: bool = False) -> None:
        """Record one value or an array of samples for metric ``name`` in the current trial.

        ``better`` is ``"lower"`` or ``"higher"``; when omitted it is inferred from the unit (a rate such
        as ``GB/s`` is better higher, anything else lower). Non-finite values are refused: a NaN in a
        benchmark is a bug in the benchmark, and letting it into percentiles would hide it.
        """
        metric = self.metrics.get(name)
        if metric is None and (not isinstance(name, str) or not name.replace("_", "a").isalnum()
                               or name[0].isdigit()):
            raise HwbenchInputError(f"metric name {name!r} is not an identifier", field=self.test_id,
                                    fix="use letters, digits and '_' (e.g. 'ttft_ms'), starting with a letter")
        arr: np.ndarray | float
        if type(value) is float or type(value) is int:  # the common case: one number, no numpy round trip
            arr = float(value)
            if not math.isfinite(arr):
                self._refuse_nonfinite(name, 1, 1)
        else:
            import numpy as np

            # A copy, so a caller that reuses its buffer cannot change what was recorded.
            arr = np.array(value, dtype=np.float64).reshape(-1)
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            if bad:
                self._refuse_nonfinite(name, bad, arr.size)
            if arr.size == 0:
                return
        direction = better or infer_better(unit)
        if direction not in ("lower", "higher"):
            raise HwbenchInputError(f"metric {name!r}: better={better!r}", field=self.test_id,
                                    fix="use better='lower' or better='higher'")
        if metric is None:
            metric = self.metrics[name] = Metric(name=name, unit=unit, better=direction, estimated=estimated)
        elif unit and metric.unit and unit != metric.unit:
            raise HwbenchInputError(f"metric {name!r} recorded with unit {unit!r} after {metric.unit!r}",
                                    field=self.test_id, fix="record each metric in one unit")
        metric.estimated = metric.estimated or estimated
        if self.is_warmup:
            return
        metric.add(arr, self.trial)

    def _refuse_nonfinite(self, name: str, bad: int, size: int) -> None:
        raise HwbenchInputError(
            f"metric {name!r} got {bad} non-finite value(s) (NaN or inf) out of {size}",
            field=self.test_id, fix="record only finite measurements; count failures in a separate "
            "metric such as error_rate")

    def timer(self, name: str, unit: str = "s") -> Timer:
        """A ``with`` / ``async with`` block whose elapsed time is recorded as ``name`` (unit s/ms/us/ns)."""
        return Timer(self, name, unit)

    def time(self, fn: Callable[..., T], *args: Any, name: str | None = None, unit: str = "s",
             rounds: int | None = None, iterations: int | None = None, max_time_s: float = 1.0,
             min_rounds: int = 5, warmup: bool | float = True, disable_gc: bool = False, **kwargs: Any) -> T:
        """Time ``fn(*args, **kwargs)`` as a micro-benchmark; record every round as ``name``; return its result.

        The default name is fn's name + ``_`` + unit. Iterations per round are calibrated against the timer's
        resolution and overhead, rounds are warmed up and then taken for ``max_time_s`` (at least
        ``min_rounds``), and each round's time per call is one sample (``measure/microbench.py`` says why
        and how). For one timed call per trial, pass ``rounds=1, iterations=1, warmup=False``. How it was
        timed (iterations, rounds, timer resolution) is kept in ``extra["timing"][name]``.
        """
        import numpy as np
        if unit not in _TIME_UNITS:
            raise ValueError(f"time unit must be one of {', '.join(_TIME_UNITS)}, got {unit!r}")
        base = getattr(fn, "__name__", "call")
        metric_name = name or f"{base if base.isidentifier() else 'call'}_{unit}"
        samples, cal, result = run_rounds(fn, args, kwargs, rounds=rounds, iterations=iterations,
                                          max_time_s=max_time_s, min_rounds=min_rounds, warmup=warmup,
                                          disable_gc=disable_gc)
        values = np.frombuffer(samples, dtype=np.float64)
        factor = _TIME_UNITS[unit] * 1e9
        self.record(metric_name, values * factor if factor != 1.0 else values, unit=unit, better="lower")
        if not self.is_warmup:
            self.extra.setdefault("timing", {})[metric_name] = cal.to_dict()
        return result  # type: ignore[no-any-return]

    def invalidate(self, reason: str) -> None:
        """Mark this measurement invalid (e.g. the load generator was the bottleneck): the verdict becomes
        at least WARN, and it is not saved as a baseline unless forced. Repeated reasons are kept once."""
        if reason not in self.invalid:
            self.invalid.append(reason)

    # -- reading back ----------------------------------------------------------------------------------
    def results(self) -> dict[str, MetricResult]:
        """Summaries of every recorded metric (pooled samples, one value per trial)."""
        return {name: m.result(self.confidence) for name, m in self.metrics.items() if m.trials}

    def result(self, name: str) -> MetricResult:
        """Summary of one metric, for assertions inside the test."""
        metric = self.metrics.get(name)
        if metric is None or not metric.trials:
            raise KeyError(f"metric {name!r} not recorded (recorded: {', '.join(self.metrics) or 'none'})")
        return metric.result(self.confidence)

