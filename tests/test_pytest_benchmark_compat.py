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


@pytest.fixture(autouse=True)
def _inner_runs_are_not_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """When this suite itself runs under ``-n 2``, its worker's ``PYTEST_XDIST_WORKER`` would reach the inner
    runs, and pytest-benchmark disables itself in what it takes for an xdist worker (no rounds, nothing to
    judge). The inner runs are plain runs."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)


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
    assert m["summary"]["count"] == facts["rounds"] >= 10
    assert fast["trials"] == 3  # the rounds split into the recipe's 3 repetitions
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


def test_pytest_benchmark_saved_runs_become_the_baseline_history(pytester: pytest.Pytester,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Import pytest-benchmark's JSON as baseline sessions; the same code then passes, a 2x slower one fails."""
    from pytest_hwbench.cli import main as cli

    pytester.makefile(".yaml", r="version: 1\nname: t\nrepetitions: 3\n")
    pytester.makepyfile(test_pb=SUITE.replace("busy, 20)", "busy, float(__import__('os').environ.get('US', 20)))"))
    common = ["--recipe", "r.yaml", NO_MLFLOW, "--benchmark-max-time=0.05", "-k", "test_fast",
              "--hwbench-testbed", "tb"]
    for i in range(2):  # two saved runs, with their rounds (--benchmark-save-data)
        res = pytester.runpytest(*common, "--benchmark-save-data", f"--benchmark-json=run{i}.json")
        res.assert_outcomes(passed=1)
    files = [str(pytester.path / f"run{i}.json") for i in range(2)]
    assert cli(["baseline", "import-pytest-benchmark", *files, "--testbed", "tb",
                "--dir", str(pytester.path / "baselines")]) == 0
    stored = json.loads(next((pytester.path / "baselines" / "tb").glob("*.json")).read_text())
    sessions = stored["tests"]["test_pb.py::test_fast"]["sessions"]
    assert len(sessions) == 2 and sessions[0]["metrics"]["time_s"]["unit"] == "s"
    assert sessions[0]["run_id"] == "pytest-benchmark:run0.json"

    res = pytester.runpytest(*common, "--hwbench-require-baseline")
    res.assert_outcomes(passed=1)
    # Compared with the imported history (a missing baseline would fail under --hwbench-require-baseline);
    # on a loaded shared runner two stored sessions may leave the same code INCONCLUSIVE, never FAIL.
    assert results(pytester)["test_pb.py::test_fast"]["baseline_status"] in ("PASS", "INCONCLUSIVE")
    monkeypatch.setenv("US", "60")  # three times slower
    res = pytester.runpytest(*common)
    # FAIL, or INCONCLUSIVE (a WARN) when the verdict rule wants more sessions of history than two; never PASS
    assert results(pytester)["test_pb.py::test_fast"]["baseline_status"] in ("FAIL", "INCONCLUSIVE")
    res.stdout.re_match_lines([r".*time_s.*\b(1\d\d|2\d\d)\.\d% worse.*"])


def test_import_refuses_a_file_that_is_not_pytest_benchmark_json(tmp_path: Path) -> None:
    from pytest_hwbench.errors import HwbenchInputError
    from pytest_hwbench.verdict.import_pytest_benchmark import read_run

    bad = tmp_path / "x.json"
    bad.write_text('{"tests": []}')
    with pytest.raises(HwbenchInputError, match="no 'benchmarks' list") as err:
        read_run(bad)
    assert err.value.file == str(bad)
    bad.write_text('{"benchmarks": [{"fullname": "t.py::a", "stats": {"rounds": 3}}]}')
    with pytest.raises(HwbenchInputError, match=r"no numeric stats\.mean"):
        read_run(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": [{"fullname": "t.py::a", "stats": {
        "rounds": 3, "mean": 2e-5, "stddev": 1e-6, "min": 1.9e-5, "max": 2.1e-5, "median": 2e-5}}]}))
    run = read_run(ok)
    m = run.records["t.py::a"].metrics["time_s"]
    assert m.trial_values == [2e-5] and m.summary.count == 3
