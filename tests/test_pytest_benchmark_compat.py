"""A test written for pytest-benchmark's ``benchmark`` fixture gets hwbench's verdicts and reports
(``measure/pytest_benchmark_compat.py``), and pytest-benchmark keeps doing its own job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark")

NO_MLFLOW = "--no-hwbench-mlflow"

SUITE = """
import time
import pytest

def busy(us):
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass

def test_fast(benchmark):
    benchmark(busy, 20)

@pytest.mark.hwbench(slo=["time_s.p50 < 1e-6"])
def test_slo_violated(benchmark):
    benchmark.pedantic(busy, args=(20,), rounds=30, iterations=2)

def test_plain():
    assert True

def test_failing(benchmark):
    benchmark(busy, 1)
    assert False, "the test's own assertion"
"""


def results(pytester: pytest.Pytester) -> dict[str, dict]:
    dirs = [d for d in sorted((pytester.path / "reports").iterdir()) if d.is_dir()]
    doc = json.loads((dirs[-1] / "results.json").read_text())
    return {t["test_id"]: t for t in doc["tests"]}


def test_benchmark_fixture_tests_get_hwbench_verdicts(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", r="version: 1\nname: t\nrepetitions: 3\n")
    pytester.makepyfile(test_pb=SUITE)
    res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW, "--benchmark-max-time=0.05",
                             "--benchmark-json=pb.json")
    res.assert_outcomes(passed=2, failed=2)
    res.stdout.fnmatch_lines(["*time_s*p50*1e-06*"])  # the SLO failure names the metric and the bound
    got = results(pytester)
    fast = got["test_pb.py::test_fast"]
    assert fast["verdict"] == "PASS"
    m = fast["metrics"]["time_s"]
    assert m["unit"] == "s" and m["better"] == "lower"
    facts = fast["extra"]["pytest_benchmark"]
    assert m["summary"]["count"] == facts["rounds"] >= 5
    assert 20e-6 <= m["summary"]["p50"] < 2e-3
    slo = got["test_pb.py::test_slo_violated"]
    assert slo["verdict"] == "FAIL" and slo["extra"]["pytest_benchmark"]["iterations"] == 2
    assert slo["metrics"]["time_s"]["summary"]["count"] == 30
    assert "test_pb.py::test_plain" not in got and "test_pb.py::test_failing" not in got
    # pytest-benchmark did its own job too: its JSON holds the same rounds hwbench judged
    pb = {b["name"]: b for b in json.loads(Path(pytester.path, "pb.json").read_text())["benchmarks"]}
    assert pb["test_fast"]["stats"]["rounds"] == facts["rounds"]
    assert pb["test_fast"]["stats"]["median"] == pytest.approx(m["summary"]["p50"])


def test_disabled_benchmarks_are_not_judged(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", r="version: 1\nname: t\n")
    pytester.makepyfile(test_pb=SUITE)
    res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW, "--benchmark-disable", "-k", "fast or plain")
    res.assert_outcomes(passed=2)
    assert not (pytester.path / "reports").exists() or not any(
        "test_pb.py::test_fast" in t for t in (results(pytester) if any(
            d.is_dir() for d in (pytester.path / "reports").iterdir()) else {}))
