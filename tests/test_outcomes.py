"""Every outcome is reported (issue #9, item 4): set-up errors and service deaths reach results.json, the
verdict table and MLflow as ERROR with the reason; a death is named with its signal, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service_helpers import need_binary

NO_MLFLOW = "--no-hwbench-mlflow"

KILLER = """
import os, signal, time
import psutil
import pytest

@pytest.mark.hwbench(service="redis")
def test_1_kill(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == hwbench_endpoint.port and conn.status == psutil.CONN_LISTEN:
            os.kill(conn.pid, signal.SIGKILL)
    time.sleep(0.5)

@pytest.mark.hwbench(service="redis")
def test_2_after(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)

@pytest.mark.hwbench(service="redis")
def test_3_after(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
"""


def _results(pytester: pytest.Pytester) -> dict[str, dict]:
    run = next(d for d in (pytester.path / "reports").iterdir() if (d / "results.json").exists())
    doc = json.loads((run / "results.json").read_text())
    return {t["test_id"]: t for t in doc["tests"]}


def test_setup_errors_are_error_results(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nservices:\n"
                                 "  redis: {kind: redis, args: ['--no-such-option', 'x'], startup_timeout: 20}\n")
    pytester.makepyfile(test_e=KILLER.replace("test_1_kill", "test_1_start"))
    res = pytester.runpytest_subprocess("--recipe", "r.yaml")  # MLflow: keep its imports out of this process
    res.assert_outcomes(errors=3)
    results = _results(pytester)
    assert len(results) == 3 and {r["verdict"] for r in results.values()} == {"ERROR"}
    first = results["test_e.py::test_1_start"]
    assert first["outcome"] == "error" and "did not start" in first["failures"][0]
    res.stdout.fnmatch_lines(["*hwbench:*3 ERROR*"])
    assert "Traceback" not in res.stdout.str()
    mlflow_db = pytester.path / "reports" / "mlflow.db"
    assert mlflow_db.exists()  # the run (with its ERROR children) was logged


def test_service_death_is_named_once(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nservices:\n  redis: {kind: redis}\n")
    pytester.makepyfile(test_k=KILLER)
    res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW)
    results = _results(pytester)
    killed = results["test_k.py::test_1_kill"]
    assert killed["verdict"] == "ERROR" and "killed by SIGKILL" in killed["failures"][0], killed["failures"]
    for name in ("test_2_after", "test_3_after"):
        later = results[f"test_k.py::{name}"]
        assert later["verdict"] == "ERROR" and "died earlier in this run (killed by SIGKILL)" in later["failures"][0]
    out = res.stdout.str()
    assert "died during the run: service" not in out  # no nested repetition of the same sentence
    assert out.count("last log lines") <= 1


def test_error_payload_reason_is_the_message(tmp_path: Path) -> None:
    from pytest_hwbench.outcomes import reason_of

    class Report:
        longrepr = "E   ValueError: bad\nE   second line"

    assert reason_of(Report()) == "ValueError: bad\nsecond line"  # type: ignore[arg-type]
