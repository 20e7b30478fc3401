"""Every outcome is reported (issue #9, item 4): set-up errors and service deaths reach results.json, the
verdict table and MLflow as ERROR with the reason; a death is named with its signal, once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.service_helpers import need_binary, our_processes, run_child

NO_MLFLOW = "--no-hwbench-mlflow"

KILL_AND_WAIT = """
def kill_and_wait(port):
    # SIGKILL the server on the port; wait until it has exited (zombie or gone), however loaded the machine
    pids = [c.pid for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN]
    assert pids, "no server listens on the port"
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
"""

KILLER = """
import os, signal, time
import psutil
import pytest

""" + KILL_AND_WAIT + """
@pytest.mark.hwbench(service="redis")
def test_1_kill(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
    kill_and_wait(hwbench_endpoint.port)

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
    results = {key.split("@")[0]: value for key, value in _results(pytester).items()}  # loadgroup's @group
    killed = results["test_k.py::test_1_kill"]
    assert killed["verdict"] == "ERROR" and "killed by SIGKILL" in killed["failures"][0], killed["failures"]
    for name in ("test_2_after", "test_3_after"):
        later = results[f"test_k.py::{name}"]
        assert later["verdict"] == "ERROR" and "died earlier in this run (killed by SIGKILL)" in later["failures"][0]
    out = res.stdout.str()
    assert "died during the run: service" not in out  # no nested repetition of the same sentence
    # once in the report (the short summary repeats a failure's whole message where pytest does not truncate
    # it: under CI=true, as in CI)
    assert out.split("short test summary info")[0].count("last log lines") <= 1


XDIST_KILLER = """
import glob, os, signal, time
import psutil
import pytest

""" + KILL_AND_WAIT + """
def _wait_for(text):  # a barrier: the controller has written the killed test's result
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for path in glob.glob("reports/*/results.jsonl"):
            with open(path) as fh:
                if text in fh.read():
                    return
        time.sleep(0.2)
    raise AssertionError("the killed test's result never reached the controller")

@pytest.fixture
def after_the_kill():
    _wait_for("test_1_kill")

@pytest.mark.xdist_group("kill")
@pytest.mark.hwbench(service="redis")
def test_1_kill(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
    kill_and_wait(hwbench_endpoint.port)

@pytest.mark.xdist_group("after")
@pytest.mark.hwbench(service="redis")
def test_2_after(after_the_kill, hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)

@pytest.mark.xdist_group("after")
@pytest.mark.hwbench(service="redis")
def test_3_after(after_the_kill, hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
"""


def test_service_death_under_xdist_is_named_with_its_signal_once(pytester: pytest.Pytester) -> None:
    """Under ``-n 2`` the controller owns redis-server and the workers see only its port close: the
    verdict still names the signal, in results.json, the terminal and JUnit, and later tests on the other
    worker say it died once, briefly."""
    need_binary("redis-server", "apt-get install redis-server")
    pytest.importorskip("xdist")
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nservices:\n  redis: {kind: redis}\n")
    pytester.makepyfile(test_k=XDIST_KILLER)
    # the later tests wait for the killed one's result: without the cross-worker lock, on the other worker
    res = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "--hwbench-allow-parallel", "-v",
                                        "--recipe", "r.yaml", NO_MLFLOW, "--junitxml", "junit.xml",
                                        timeout=600)
    out = res.stdout.str()
    workers = {line.split("]")[0] for line in out.splitlines() if line.startswith("[gw")}
    assert len(workers) == 2, out  # the kill and the later tests ran on different workers
    results = {key.split("@")[0]: value for key, value in _results(pytester).items()}  # loadgroup's @group
    killed = results["test_k.py::test_1_kill"]
    assert killed["verdict"] == "ERROR", killed
    assert killed["failures"][0].startswith("service 'redis' died during the test (killed by SIGKILL)"), \
        killed["failures"]
    for name in ("test_2_after", "test_3_after"):
        later = results[f"test_k.py::{name}"]
        assert later["verdict"] == "ERROR" and later["failures"] == [
            "error in set-up: service 'redis' died earlier in this run (killed by SIGKILL); the first test that "
            "failed on it shows its log"], later["failures"]
    assert "died during the test (killed by SIGKILL)" in out
    assert "stopped accepting connections" not in out and "died during the run: service" not in out
    assert out.split("short test summary info")[0].count("last log lines") == 1  # (see above)
    junit = (pytester.path / "junit.xml").read_text()
    assert "killed by SIGKILL" in junit and "stopped accepting connections" not in junit
    assert 'name="hwbench.verdict" value="PASS"' not in junit


TEARDOWN = """
import os, signal, time
import psutil
import pytest
import redis

""" + KILL_AND_WAIT + """
@pytest.fixture
def kv(hwbench, hwbench_endpoint):
    client = redis.Redis(host=hwbench_endpoint.host, port=hwbench_endpoint.port, socket_timeout=30)
    client.set("hwbench-t:k", "v")
    yield client
    client.delete("hwbench-t:k")  # the clean-up: refused once the server is gone

@pytest.mark.hwbench(service="redis")
def test_kill(hwbench, kv, hwbench_endpoint):
    hwbench.record("x", 1.0)
    kill_and_wait(hwbench_endpoint.port)
"""


def _no_traceback(out: str) -> None:
    assert "Traceback" not in out and "\nE   " not in out and "site-packages" not in out, out


def test_cleanup_of_a_dead_service_is_one_paragraph_not_a_traceback(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nservices:\n  redis: {kind: redis}\n")
    pytester.makepyfile(test_t=TEARDOWN)
    res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW)
    res.assert_outcomes(failed=1, errors=1)
    out = res.stdout.str()
    _no_traceback(out)
    assert "stopping a service failed" not in out  # stopping a dead service at session end is quiet
    res.stdout.fnmatch_lines(["*test_t.py::test_kill: teardown failed in fixture 'kv' (test_t.py:*): "
                              "redis.exceptions.ConnectionError: *Cause: service 'redis' died during the run "
                              "(killed by SIGKILL), so the clean-up could not reach it. Fix: *"])
    result = _results(pytester)["test_t.py::test_kill"]
    assert result["verdict"] == "ERROR" and "died during the test (killed by SIGKILL)" in result["failures"][0]
    assert "teardown failed in fixture 'kv'" in result["failures"][-1]


REFUSED = """
import pytest
from pytest_hwbench.workloads.redis_client import RedisWorkload

@pytest.fixture
def workload(hwbench, hwbench_endpoint):
    workload = RedisWorkload.from_endpoint(hwbench_endpoint, keyspace=10)
    workload.prepare_sync()
    yield workload
    workload.cleanup_sync()

@pytest.mark.hwbench(service="redis")
def test_refused(hwbench, workload):
    hwbench.record("x", 1.0)
"""


def test_a_workload_that_may_not_delete_its_data_says_so_at_teardown(pytester: pytest.Pytester) -> None:
    """The server's ACL forbids UNLINK: the clean-up fails while the server runs; the teardown error names
    the test, the fixture, the prefix left behind and how to delete it."""
    need_binary("redis-server", "apt-get install redis-server")
    acl = "['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '-unlink']"
    pytester.makefile(".yaml", r=f"version: 1\nrepetitions: 1\nservices:\n  redis: {{kind: redis, args: {acl}}}\n")
    pytester.makepyfile(test_r=REFUSED)
    res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW)
    res.assert_outcomes(passed=1, errors=1)
    out = res.stdout.str()
    _no_traceback(out)
    res.stdout.fnmatch_lines(["*test_r.py::test_refused: teardown failed in fixture 'workload' (test_r.py:*): "
                              "Redis at 127.0.0.1:* could not delete this benchmark's keys under 'hwbench:*' "
                              "(NoPermissionError: *unlink*); if the server still runs, delete them with "
                              "redis-cli *ACL +scan +unlink)."])
    result = _results(pytester)["test_r.py::test_refused"]
    assert result["verdict"] == "ERROR" and "teardown failed in fixture 'workload'" in result["failures"][-1]


LEAK = """
import sys, time
from pytest_hwbench.services import ServiceSet
from pytest_hwbench.recipe.model import ServiceSpec
with ServiceSet(log_dir=sys.argv[1], state_dir=sys.argv[2], run_id=sys.argv[3], handle_signals=False) as services:
    services.start(ServiceSpec("cache", "redis", "process", {}))
    print("READY", flush=True)
    time.sleep(600)
"""


def test_what_a_killed_run_left_is_reaped_and_reported(pytester: pytest.Pytester, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed with SIGKILL leaves its redis-server running; the next run that starts a service stops
    it and says so in the terminal and in run.json."""
    from pytest_hwbench.services.reaper import reap_leftovers

    need_binary("redis-server", "apt-get install redis-server")
    state = tmp_path / "state"
    run_id = f"leak-{os.getpid()}-{time.monotonic_ns()}"
    child = run_child(LEAK, str(tmp_path / "logs"), str(state), run_id)
    try:
        assert child.stdout is not None
        first = child.stdout.readline()  # blocks until the service is healthy (or the child failed)
        assert first.startswith("READY"), first + child.stdout.read()
        child.kill()  # no handler runs: redis-server outlives its owner
        child.wait(timeout=60)
        assert len(our_processes(run_id)) == 1
        monkeypatch.setenv("HWBENCH_STATE_DIR", str(state))
        pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nservices:\n  redis: {kind: redis}\n")
        pytester.makepyfile(test_n="""
            import pytest

            @pytest.mark.hwbench(service="redis")
            def test_uses_redis(hwbench, hwbench_endpoint):
                hwbench.record("x", 1.0)
        """)
        res = pytester.runpytest("--recipe", "r.yaml", NO_MLFLOW)
        res.assert_outcomes(passed=1)
        # (the same Docker engine may hold other dead runs' containers: those are reaped and listed too)
        res.stdout.fnmatch_lines([f"pytest-hwbench: removed * leftover(s) of earlier runs that died: "
                                  f"cache (redis) pid * of run {run_id}*"])
        assert our_processes(run_id) == []
        run = next(d for d in (pytester.path / "reports").iterdir() if (d / "run.json").exists())
        reaped = json.loads((run / "run.json").read_text())["reaped_leftovers"]
        assert [p for p in reaped["processes"] if run_id in p], reaped
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        reap_leftovers(state, run_id=run_id, include_live_owners=True, docker=False)


def test_error_payload_reason_is_the_message(tmp_path: Path) -> None:
    from pytest_hwbench.outcomes import reason_of

    class Report:
        longrepr = "E   ValueError: bad\nE   second line"

    assert reason_of(Report()) == "ValueError: bad\nsecond line"  # type: ignore[arg-type]


def test_a_test_that_crashes_after_some_trials_is_an_error_with_its_reason(pytester: pytest.Pytester) -> None:
    """Two trials recorded, the third raises: the partial measurements are kept and the ERROR says why."""
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 3\nwarmup: 0\n")
    pytester.makepyfile(test_crash="""
        import pytest
        calls = []

        @pytest.mark.hwbench
        def test_crash(hwbench):
            calls.append(1)
            if len(calls) == 3:
                pytest.fail("the tool's two readings disagree", pytrace=False)
            hwbench.record("x", 1.0)
        """)
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", NO_MLFLOW, "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    (test,) = _results(pytester).values()
    assert test["verdict"] == "ERROR" and test["trials"] == 2, test
    assert test["failures"][0] == "error in the test body after 2 trial(s): the tool's two readings disagree"
