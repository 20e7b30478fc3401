"""Tests written for pytest-benchmark's ``benchmark`` fixture get hwbench verdicts, baselines and reports.

Why: users already have suites of ``def test_x(benchmark): benchmark(fn)``. With pytest-hwbench installed
next to pytest-benchmark, those tests keep working exactly as before (pytest-benchmark times them, prints
its table, saves and compares its own runs), and hwbench additionally judges what was measured: SLOs from
the recipe or an ``@pytest.mark.hwbench(slo=[...])`` marker, the baseline history, results files, JUnit
properties and MLflow — the same as a test that used the ``hwbench`` fixture.

How: nothing of pytest-benchmark is replaced or patched. A ``pytest_runtest_call`` wrapper lets the test
run (pytest-benchmark's fixture does its calibrated rounds), then reads the fixture's own samples — one
value per round, seconds per call (``fixture.stats.stats.data``) — into an hwbench ``Recorder`` as the
metric ``time_s`` (better lower), and hands that to the session's usual judgement.

Trials: pytest-benchmark runs a test body once and refuses a second call, but the baseline comparison needs
at least two trials to see how much a result moves. The rounds, in the order they ran, are therefore split
into ``repetitions`` (the recipe's, at least 2) consecutive blocks, each block one trial (its median the
trial value). Blocks see the noise that varies over the run (other tenants, frequency, caches); they cannot
see what varies between processes (memory layout, hash seeds) — that spread comes from the baseline's
history of sessions. Warm-up trials of the recipe do not apply (pytest-benchmark does its own warm-up).

Not judged: a test whose fixture measured nothing (``--benchmark-disable``, ``--benchmark-skip``, or xdist,
under which pytest-benchmark disables itself), and tests that also use the ``hwbench`` fixture (the
hwbench fixture's own records are judged then).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.measure.recorder import Recorder

#: The metric a pytest-benchmark measurement becomes.
METRIC = "time_s"


def samples_of(fixture: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Seconds per call of every round a pytest-benchmark fixture measured, and its facts; None if none."""
    import numpy as np
    meta = getattr(fixture, "stats", None)
    stats = getattr(meta, "stats", None)
    data = getattr(stats, "data", None)
    if getattr(fixture, "disabled", False) or getattr(fixture, "has_error", False) or not data:
        return None
    facts = {"name": getattr(fixture, "name", None), "group": getattr(fixture, "group", None),
             "rounds": len(data), "iterations": getattr(meta, "iterations", None),
             "options": {k: (v if isinstance(v, (int, float, str, bool)) or v is None else repr(v))
                         for k, v in (getattr(meta, "options", None) or {}).items()},
             "extra_info": dict(getattr(fixture, "extra_info", None) or {})}
    return np.asarray(data, dtype=np.float64), facts


def split_rounds(samples: np.ndarray, trials: int, min_rounds: int = 5) -> list[np.ndarray]:
    """The rounds as ``trials`` (at least 2) consecutive blocks of at least ``min_rounds`` each (fewer blocks
    when there are too few rounds; one block below ``2 * min_rounds``)."""
    import numpy as np
    blocks = max(1, min(max(2, trials), samples.size // min_rounds))
    return [b for b in np.array_split(samples, blocks) if b.size]


class BenchmarkFixtureBridge:
    """Registered by the plugin when pytest-benchmark is present (plugin name ``benchmark``)."""

    def __init__(self, session: Any, recorder_key: Any, on_judged: Any) -> None:
        self.session = session
        self.recorder_key = recorder_key
        self.on_judged = on_judged  # plugin's callback: stash the payload, JUnit properties, FAIL

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        if "benchmark" not in getattr(item, "fixturenames", ()) or self.recorder_key in item.stash:
            return (yield)
        from pytest_hwbench.measure.fingerprint import run_conditions

        conditions = run_conditions()
        result = yield  # the test ran; a failing test raised out of the yield and is not judged
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        got = samples_of(fixture)
        if got is None:
            return result
        samples, facts = got
        recorder = Recorder(item.nodeid, params=self.session.params_of(item), recipe=self.session.recipe,
                            confidence=self.session.recipe.baseline.confidence)
        _, reps = self.session.repetitions_for(item)
        for i, block in enumerate(split_rounds(samples, reps)):
            recorder.begin_trial(i)
            recorder.record(METRIC, block, unit="s", better="lower")
        recorder.extra["pytest_benchmark"] = facts
        verdict, payload = self.session.judge(item, recorder, conditions)
        self.on_judged(item, verdict, payload)
        return result
