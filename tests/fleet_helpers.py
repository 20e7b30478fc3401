"""Run directories written the way a session writes them, for the fleet and dashboard tests.

Values are drawn from a seeded RNG around a known mean per host, so a test knows which machine is slower
and by how much; the files go through ``RunWriter`` and ``Summary`` like a real session's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.report.files import RunWriter

BASE_ENV = {"kernel": "6.1.0-18-amd64", "dmi": {"bios_version": "2.1.3", "board_name": "H12SSL"},
            "gpu": {"driver_version": "550.54.15"}, "memory": {"total_gib": 24, "dimms": 8},
            "cpu": {"model": "AMD EPYC 7B13"}}


def metric(values: Sequence[float], unit: str, better: str) -> dict[str, Any]:
    s = summarize(values).to_dict()
    return {"unit": unit, "better": better, "summary": s, "trial_values": [float(v) for v in values]}


def write_run(root: Path, *, host: str, testbed: str, tests: Mapping[str, Mapping[str, dict[str, Any]]],
              started_at: float | None = None, env: Mapping[str, Any] | None = None, run_id: str | None = None,
              recipe: str = "fleet", verdicts: Mapping[str, str] | None = None,
              extra: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """One session's run directory; ``tests`` maps test id -> metric name -> ``metric(...)``."""
    started_at = time.time() if started_at is None else started_at
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_at)) + f"-{host}"[:24]
    writer = RunWriter(root, run_id)
    fp = {**BASE_ENV, **(env or {}), "hostname": host}
    results = []
    for test_id, metrics in tests.items():
        result = {"test_id": test_id, "name": test_id.split("::")[-1], "params": {}, "outcome": "passed",
                  "verdict": (verdicts or {}).get(test_id, "PASS"), "metrics": dict(metrics), "slo": [],
                  "baseline": None, "failures": [], "warnings": [], "duration_s": 1.0,
                  "extra": dict((extra or {}).get(test_id, {}))}
        writer.append_result(result)
        results.append(result)
    writer.write_results({"schema": 1, "run_id": run_id, "testbed": testbed, "complete": True, "tests": results})
    writer.write_manifest({"schema": 1, "run_id": run_id, "testbed": testbed, "complete": True,
                           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
                           "recipe": {"name": recipe, "path": f"recipes/{recipe}.yaml", "sha256": "0" * 64},
                           "git": {"commit": "c0ffee" * 6 + "abcd", "dirty": False}, "fingerprint": fp})
    writer.close()
    return writer.dir


def fleet_dirs(root: Path, means: Mapping[str, float], *, sessions: int = 2, trials: int = 5, cv: float = 0.01,
               testbed: str = "epyc-7b13", env: Mapping[str, Mapping[str, Any]] | None = None,
               seed: int = 7, t0: float = 1.78e9, module: str = "benchmarks/test_host.py",
               drift: float = 0.0) -> list[Path]:
    """``sessions`` sessions per host of a throughput test (GB/s, higher better) and a latency test (ms),
    an hour apart (``drift``: relative change of the mean per session)."""
    rng = np.random.default_rng(seed)
    dirs = []
    for s in range(sessions):
        for i, (host, mean) in enumerate(means.items()):
            m = mean * (1 + drift * s)
            gbs = rng.normal(m, cv * m, trials)
            lat = rng.normal(100.0 * 10.0 / m, cv, trials)
            tests = {f"{module}::test_copy": {"copy_gb_s": metric(gbs, "GB/s", "higher")},
                     f"{module}::test_latency": {"lat_ms": metric(lat, "ms", "lower")}}
            dirs.append(write_run(root, host=host, testbed=testbed, tests=tests, env=(env or {}).get(host),
                                  started_at=t0 + 3600 * s + i))
    return dirs
