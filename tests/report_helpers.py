"""A small synthetic benchmark suite run in a subprocess, for the report / compare / rerun / export tests.

The values are seeded per test and trial, so two runs with the same ``SLOWDOWN`` give identical numbers (an
"unchanged rerun on a quiet machine") and ``SLOWDOWN=1.5`` is a clear, known regression of ``latency_ms``.
``test_serve`` is a concurrency sweep with a capacity of 4 and an SLO that fails at 8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUITE = '''
import os
import numpy as np
import pytest

SLOW = float(os.environ.get("SLOWDOWN", "1"))


@pytest.mark.hwbench(sweep={"concurrency": [1, 2, 4, 8]})
def test_serve(hwbench, concurrency):
    rng = np.random.default_rng(1000 * concurrency + hwbench.trial + 7)
    cap = 4
    hwbench.record("ttft_ms", rng.lognormal(np.log(10 * max(1, concurrency / cap)), 0.2, 200), unit="ms")
    hwbench.record("itl_ms", rng.gamma(2.0, 1.0, 400), unit="ms")
    hwbench.record("req_s", min(concurrency, cap) * 100 * (1 + 0.01 * rng.standard_normal()), unit="req/s")
    hwbench.extra["llm"] = {"totals": {"errors": {"timeout": 1} if concurrency == 8 else {}}}


def test_slow(hwbench):
    rng = np.random.default_rng(hwbench.trial + 11)
    hwbench.record("latency_ms", 5.0 * SLOW * (1 + 0.01 * rng.standard_normal(40)), unit="ms")
    hwbench.record("ops_s", 1000 / SLOW * (1 + 0.01 * rng.standard_normal()), unit="ops/s")


def test_noisy(hwbench):
    seed = int(os.environ.get("NOISE_SEED", "1"))
    rng = np.random.default_rng(seed * 100 + hwbench.trial)
    hwbench.record("jitter_ms", 10 * (1 + 0.3 * rng.standard_normal()) * np.ones(3), unit="ms")
'''

RECIPE = '''
version: 1
name: synthetic
repetitions: 5
slo:
  "test_suite.py::test_serve*":
    - ttft_ms.p99 < 30
baseline:
  tolerance: 0.05
  inconclusive: warn
settings:
  token: ${HWBENCH_TEST_API_TOKEN:-none}
'''


def write_suite(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "test_suite.py").write_text(SUITE)
    (where / "recipe.yaml").write_text(RECIPE)
    (where / "pytest.ini").write_text("[pytest]\n")
    return where


def env_for(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HWBENCH_RERUN_OF", None)
    env.update(extra)
    return env


def run_suite(where: Path, *args: str, mlflow: bool = False,
              **env: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run the suite in ``where`` (a fresh subprocess); return the run directory it wrote. With ``mlflow``
    the session is logged to ``where/reports/mlflow.db``."""
    before = set((where / "reports").glob("*/run.json")) if (where / "reports").is_dir() else set()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--recipe", "recipe.yaml",
                           *([] if mlflow else ["--no-hwbench-mlflow"]), *args, "test_suite.py"],
                          cwd=where, env=env_for(**env), capture_output=True, text=True, timeout=600)
    after = set((where / "reports").glob("*/run.json")) - before
    assert len(after) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    return next(iter(after)).parent, proc


def hwbench(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_hwbench.cli", *map(str, args)], cwd=cwd,
                          env=env_for(**env), capture_output=True, text=True, timeout=600)


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())
